"""Named training configurations. Full mode is what students run; CMLEARN_FAST=1 shrinks them via cmlearn.pick."""

from __future__ import annotations

from collections.abc import Callable

from cmlearn.nets.ncsnpp import ncsnpp_config
from cmlearn.runtime import pick
from cmlearn.train.config import TrainConfig
from cmlearn.train.presets_continuous import CONTINUOUS_PRESETS

TOY_NET = {"width": 256, "depth": 4, "emb_dim": 64}


def toy_edm() -> TrainConfig:
    """A learned EDM teacher for 2D data (also the teacher for CD on a user's own point cloud).

    input_scale = 10 (x fed to the MLP times 10): with unit-scale input the EDM loss on eight Gaussians stayed at
    1.0066 after 600 Adam steps (F = 0 scores 0.997, the exact denoiser 0.79); x 5 reached 0.855, x 10 0.813 at
    1000 steps (issue 19, spectral bias: the modes are 10x narrower than sigma_data). Issue 17, Heun N = 18 sliced W2
    (20k samples, ``evaluate_points`` seed 0), training seeds 0 / 1 / 2: 4000 steps of batch 512 0.0156 / 0.0130 /
    0.0132, of batch 1024 0.0137 / 0.0134 / 0.0149; 6000 steps of 1024 (the previous preset) 0.0147 (seed 0).
    """
    return TrainConfig(preset="toy-edm", kind="edm", net="mlp", net_kwargs=dict(TOY_NET, input_scale=10.0),
                       optimizer="adam",
                       steps=pick(4000, 300), batch_size=pick(512, 256), lr=2e-3, lr_schedule="cosine",
                       lr_final=0.05, ema_decay=0.998, checkpoint_every=pick(2000, 100), log_every=pick(200, 50))


def toy_cd() -> TrainConfig:
    """Consistency distillation (Alg. 2) from the exact score, Heun, N = 18, target EMA mu = 0.95.

    input_scale = 10, as toy-edm's (issue 17: better samples in fewer steps). 1-step sliced W2 (20k samples,
    ``evaluate_points`` seed 0; exact Heun N = 18 0.0140), training seeds 0 / 1 / 2: 6000 steps 0.0154 / 0.0151 /
    0.0150; 5000 steps 0.0162 / 0.0162 / 0.0162; 4000 steps 0.0186 / 0.0186 / 0.0183; unit-scale input (the
    previous preset) at 8000 steps 0.0159 / 0.0161, at 4000 0.0232. The README's table has the 2-step and NLL figures.
    """
    return TrainConfig(preset="toy-cd", kind="cd", teacher="exact", net="mlp",
                       net_kwargs=dict(TOY_NET, input_scale=10.0), steps=pick(6000, 300), batch_size=pick(512, 256),
                       lr=2e-3, lr_schedule="cosine",
                       lr_final=0.02, N=18, solver="heun", mu=0.95, distance="l2", ema_decay=0.998,
                       checkpoint_every=pick(1000, 100), log_every=pick(200, 50))


def toy_ct() -> TrainConfig:
    """Consistency training (Alg. 3): N(k)/mu(k) curriculum (paper form, s0 = 2, mu0 = 0.9), l2.

    s1 = 40, not the paper's 150: with K = 15k steps, s1 = 150 pushes mu(k) past 0.996 in the first third of
    training and ends far behind (notebook 06, Section 4: 1-step SW 0.234 vs 0.076).

    Kept as the paper's algorithm (notebook 06 teaches it). On new 2D data use the CT recipe of issue 19
    (README): ``stable_target=true stable_ref=4096 s0=10`` and the MLP's input x 10, 1.23x-2.11x the exact Heun-18
    energy distance at 1 step on three unseen mixtures, two seeds (this preset, seed 0: 6.8x-24.2x).
    """
    return TrainConfig(preset="toy-ct", kind="ct", net="mlp", net_kwargs=dict(TOY_NET), steps=pick(15000, 300),
                       batch_size=pick(512, 256), lr=2e-3, lr_schedule="cosine", lr_final=0.02, s0=2, s1=40,
                       mu0=0.9, distance="l2", ema_decay=0.999, checkpoint_every=pick(1000, 100),
                       log_every=pick(200, 50))


def toy_ict() -> TrainConfig:
    """Improved CT: mu = 0, pseudo-Huber, lambda = 1/(t_{n+1} - t_n), lognormal n, exponential N(k); with the toy
    recipe of issue 19: the stable target with 4096 more reference points (``stable_target``, ``stable_ref``),
    P_std = 3 and the MLP's input x 10.

    s1 = 80 (N <= 81), not 1280: with K = 15k steps the paper's last stages (N = 161 ... 1281, under 2k steps
    each) drown the signal in noise on a toy (notebook 06, Section 5, with the previous recipe: 1-step SW 0.190 vs
    0.022). The recipe, measured on three 2D mixtures the presets never use (``benchmarks/toy_quality.py``, energy
    distance / exact Heun-18, 32 draws; README, issue 19): the paper's settings alone (P_std = 2, unit input)
    37x-62x at 1 step on the mixtures with unequal modes, whose weights come out wrong at t = T (2% of draws have
    t > 20 at P_std = 2, 9% at 3); + stable target, 4096 reference points, P_std = 3: 1.13x-1.81x; + input x 10:
    0.67x-0.99x (training seed 1: 0.71x-0.93x; this preset trained again with the stable target's row blocks,
    seeds 0 / 1: 0.69x-1.08x / 0.74x-0.96x), 2 steps 0.70x-0.93x; at 8000 steps 1.30x-1.80x.
    """
    return TrainConfig(preset="toy-ict", kind="ict", net="mlp", net_kwargs=dict(TOY_NET, input_scale=10.0),
                       steps=pick(15000, 300), batch_size=pick(512, 256), lr=2e-3, lr_schedule="cosine",
                       lr_final=0.02, s0=10, s1=80, distance="pseudo_huber", weighting="ict", p_mean=-1.1, p_std=3.0,
                       stable_target=True, stable_ref=4096, ema_decay=0.999, checkpoint_every=pick(1000, 100),
                       log_every=pick(200, 50))


# ---------------------------------------------------------------- 8x8 digits (notebook 08, CPU minutes)

DIGITS_NET = {"img_resolution": 8, "in_channels": 1, "channels": 32, "channel_mult": [1, 2], "num_blocks": 1,
              "attn_resolutions": []}
DIGITS_NET_FAST = dict(DIGITS_NET, channels=16)


def _digits(**kw) -> TrainConfig:
    """Shared digits settings: the small UNet (attention only in the 4x4 middle block), Adam, cosine decay."""
    base = dict(data="digits", net="unet", net_kwargs=dict(pick(DIGITS_NET, DIGITS_NET_FAST)), optimizer="adam",
                lr_schedule="cosine", checkpoint_every=pick(500, 1000), log_every=pick(50, 10))
    base.update(kw)
    return TrainConfig(**base)


def digits_edm() -> TrainConfig:
    """EDM teacher on the 8x8 digits (sampled with Heun N = 18): about 7 minutes of one CPU core."""
    return _digits(preset="digits-edm", kind="edm", steps=pick(3000, 60), batch_size=pick(64, 32), lr=2e-3,
                   lr_final=0.05, ema_decay=0.999)


def digits_cd() -> TrainConfig:
    """CD from runs/digits-edm (override ``teacher=RUN_DIR``), initialised from it: Heun, N = 18, l2, mu = 0.95.

    The eval EMA (0.995) is short because the run is: 0.999 would still hold 22% of the initial weights at the end.
    """
    return _digits(preset="digits-cd", kind="cd", teacher="runs/digits-edm", init_from="teacher", solver="heun",
                   N=18, mu=0.95, distance="l2", steps=pick(2000, 40), batch_size=pick(64, 32), lr=5e-4,
                   lr_final=0.05, ema_decay=0.995)


def digits_ct() -> TrainConfig:
    """CT from scratch (no teacher): N(k) curriculum (s0 = 10, s1 = 40), with the target theta- = theta (mu = 0),
    the pseudo-Huber distance and lambda = 1/(t_{n+1} - t_n), as iCT found better (Song & Dhariwal 2023).

    The paper's CT recipe (s0 = 2, target EMA mu(k) from mu0 = 0.9, l2, uniform weights) collapses at this budget:
    1-step FD-digits 278, most samples 8s; this one reaches 55.8 / 57.6 (evaluation seeds 0 / 1; CD: 19.6, so 2.85x
    / 2.94x) with every digit present (notebook 08 trains both). s0 = 10 is iCT's start: with the paper's s0 = 2
    the first grids are too coarse for this short run (59.2, 3.02x). s1 = 40, not CIFAR-10's 150: at 2000 steps
    with s0 = 2, s1 = 20 (94.4), s1 = 80 (61.8), lr 5e-4 (64.7) and lr 2e-3 (70.4) were worse.
    """
    return _digits(preset="digits-ct", kind="ct", s0=10, s1=40, ct_fixed_mu=0.0, distance="pseudo_huber",
                   weighting="ict", steps=pick(2000, 60), batch_size=pick(64, 32), lr=1e-3, lr_final=0.05,
                   ema_decay=0.995)


def digits_ict() -> TrainConfig:
    """Improved CT: mu = 0, pseudo-Huber, lambda = 1/(t_{n+1} - t_n), lognormal n, exponential N(k)."""
    return _digits(preset="digits-ict", kind="ict", s0=10, s1=1280, distance="pseudo_huber", weighting="ict",
                   p_mean=-1.1, p_std=2.0, steps=pick(2000, 60), batch_size=pick(64, 32), lr=1e-3, lr_final=0.05,
                   ema_decay=0.995)


# ---------------------------------------------------------------- CIFAR-10 (PAPER_FACTS; paper App. C)

CIFAR_SIZES = ("full", "smoke")


def _cifar(size: str, **kw) -> TrainConfig:
    """Shared CIFAR-10 settings; ``smoke`` keeps the code path with a tiny NCSN++ and a handful of steps."""
    if size not in CIFAR_SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {CIFAR_SIZES}")
    net = ncsnpp_config("cifar10" if size == "full" else "smoke")  # the paper's NCSN++ or the tiny smoke one
    net["dropout"] = kw.pop("dropout", 0.0)
    base = dict(data="cifar10", data_root="data/cifar10", net="ncsnpp", net_kwargs=net, log_every=100,
                checkpoint_every=10_000)
    if size == "smoke":
        kw.update(steps=4, batch_size=8, checkpoint_every=2, log_every=1, micro_batch=0)
        if kw["kind"] in ("ct", "ict"):
            kw["K"] = 4  # the whole curriculum inside the smoke run
        if kw.get("distance") == "lpips":  # LPIPS needs VGG weights from the network: the smoke run stays offline
            kw["distance"] = "pseudo_huber"
    base.update(kw)
    return TrainConfig(**base)


def cifar10_edm(size: str = "full") -> TrainConfig:
    """EDM teacher: batch 512, Adam lr 1e-3, warmup over 10M images, dropout 0.13, EMA half-life 0.5M images."""
    return _cifar(size, preset="cifar10-edm", kind="edm", optimizer="adam", lr=1e-3, batch_size=512,
                  warmup=10_000_000 // 512, steps=200_000_000 // 512, dropout=0.13,
                  ema_decay=0.5 ** (512 / 500_000))


def cifar10_cd(size: str = "full") -> TrainConfig:
    """CD (LPIPS, Heun, N = 18, mu = 0), RAdam lr 4e-4, batch 512, 800k steps, EMA 0.9999, from the EDM teacher.

    micro_batch = 128: on one H200 the LPIPS step at 512 runs out of memory (135 GiB), at 128 it takes 36 GiB, so
    one GPU accumulates 4 micro-batches and 4 or more GPUs none.
    """
    teacher = "runs/cifar10-edm" if size == "full" else "runs/cifar10-edm-smoke"
    return _cifar(size, preset="cifar10-cd", kind="cd", teacher=teacher, init_from="teacher", distance="lpips",
                  solver="heun", N=18, mu=0.0, optimizer="radam", lr=4e-4, batch_size=512, steps=800_000,
                  ema_decay=0.9999, micro_batch=128)


def cifar10_ct(size: str = "full") -> TrainConfig:
    """CT (LPIPS), N(k)/mu(k) with s0 = 2, s1 = 150, mu0 = 0.9, K = 800k; RAdam lr 4e-4, batch 512, random init."""
    return _cifar(size, preset="cifar10-ct", kind="ct", distance="lpips", s0=2, s1=150, mu0=0.9, K=800_000,
                  optimizer="radam", lr=4e-4, batch_size=512, steps=800_000, ema_decay=0.9999)


def cifar10_ict(size: str = "full") -> TrainConfig:
    """iCT: pseudo-Huber, lambda = 1/(t_{n+1} - t_n), lognormal n, exponential N(k) s0 = 10, s1 = 1280, mu = 0.

    Adam lr 1e-4, batch 1024, 400k steps, dropout 0.3, eval EMA 0.99993 (Song & Dhariwal 2023).
    """
    return _cifar(size, preset="cifar10-ict", kind="ict", distance="pseudo_huber", weighting="ict", s0=10, s1=1280,
                  K=400_000, p_mean=-1.1, p_std=2.0, optimizer="adam", lr=1e-4, batch_size=1024, steps=400_000,
                  dropout=0.3, ema_decay=0.99993)


PRESETS: dict[str, Callable[..., TrainConfig]] = {
    "toy-edm": toy_edm,
    "toy-cd": toy_cd,
    "toy-ct": toy_ct,
    "toy-ict": toy_ict,
    "digits-edm": digits_edm,
    "digits-cd": digits_cd,
    "digits-ct": digits_ct,
    "digits-ict": digits_ict,
    "cifar10-edm": cifar10_edm,
    "cifar10-cd": cifar10_cd,
    "cifar10-ct": cifar10_ct,
    "cifar10-ict": cifar10_ict,
}


def get_preset(name: str, *, size: str = "full") -> TrainConfig:
    """The preset's config; ``size`` picks a scale for presets that have several (e.g. CIFAR-10's ``smoke``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    fn = PRESETS[name]
    if size != "full":
        try:
            return fn(size=size)
        except TypeError as err:
            raise ValueError(f"preset {name!r} has no size {size!r} (only 'full')") from err
    return fn()


# ---------------------------------------------------------------- progressive distillation (notebook 11)


def toy_pd() -> TrainConfig:
    """Progressive distillation (Salimans & Ho 2022) from the teacher toy-cd distills (the exact score; or
    ``teacher=RUN_DIR`` of a toy-edm run): 32 DDIM steps -> 16 -> ... -> 1, ``steps`` per round (5 rounds), each
    student initialised from its teacher (the first from scratch when the teacher is exact). The eval EMA is short
    because a round is (0.99 left a 150-step round's 1-step student at sliced W2 0.39, 0.95 at 0.29, its 4-step
    DDIM teacher's 0.28)."""
    return TrainConfig(preset="toy-pd", kind="pd", teacher="exact", net="mlp", net_kwargs=dict(TOY_NET),
                       optimizer="adam", pd_start=pick(32, 8), pd_nfe=1, steps=pick(1200, 40),
                       batch_size=pick(512, 256), lr=1e-3, lr_schedule="cosine", lr_final=0.1, ema_decay=0.98,
                       checkpoint_every=pick(1200, 40), log_every=pick(100, 20))


def digits_pd() -> TrainConfig:
    """Progressive distillation of runs/digits-edm (override ``teacher=RUN_DIR``), the teacher digits-cd distills:
    16 DDIM steps -> 8 -> ... -> 1 (4 rounds of ``steps`` each), each student initialised from its teacher."""
    return _digits(preset="digits-pd", kind="pd", teacher="runs/digits-edm", pd_start=pick(16, 4), pd_nfe=1,
                   steps=pick(200, 10), batch_size=pick(64, 32), lr=5e-4, lr_final=0.1, ema_decay=0.98)


PRESETS["toy-pd"] = toy_pd
PRESETS["digits-pd"] = digits_pd


# ---------------------------------------------------------------- Easy Consistency Tuning (cmlearn.core.ect)


def toy_ect() -> TrainConfig:
    """ECT (Geng et al. 2025) from a toy-edm run (override ``init_from=RUN_DIR``): lognormal t, r(t) with dt / t
    halving every ``ect_stage_steps`` (q = 2, 6 stages of 750, so dt / t ends near 1/64), pseudo-Huber / (t - r),
    theta- = stopgrad(theta); P_mean = 0, not ECT's -1.1, and P_std = 3, not 2: more draws at the large t that one
    step starts from. Not in ECT: the stable target with 4096 reference points (``stable_target``, ``stable_ref``;
    as toy-ict's). The net matches toy-edm's (input_scale 10). EMA 0.995: the 1-step map moves with every stage and a
    longer average lags it (0.999: 0.064). Sliced W2 (20k samples, ``evaluate_points`` seed 0) from one 4000-step
    toy-edm run (its Heun N = 18 0.0156), training seeds 0 / 1 / 2 / 3, 1 step 0.0150 / 0.0152 /
    0.0157 / 0.0144 (mean 0.0151), 2 steps 0.0109 / 0.0117 / 0.0120 / 0.0112, in 4500 steps: toy-cd's level (0.0154 /
    0.0151 / 0.0150 in 6000 steps from the exact score). The previous preset (6 stages of 1000, P_std 2, EMA 0.998,
    6000 steps) 0.0212 / 0.0217 / 0.0191 at 1 step (README)."""
    return TrainConfig(preset="toy-ect", kind="ect", init_from="runs/toy-edm", net="mlp",
                       net_kwargs=dict(TOY_NET, input_scale=10.0),
                       steps=pick(4500, 160), batch_size=pick(512, 256), lr=1e-3, lr_schedule="cosine",
                       lr_final=0.05, distance="pseudo_huber", ect_q=2.0, ect_stage_steps=pick(750, 27),
                       p_mean=0.0, p_std=3.0, stable_target=True, stable_ref=4096, ema_decay=0.995,
                       checkpoint_every=pick(750, 80), log_every=pick(100, 20))


def digits_ect() -> TrainConfig:
    """ECT from runs/digits-edm (override ``init_from=RUN_DIR``): q = 2, 8 stages (dt / t from about 1/2 to 1/256),
    the first 4 of 60 steps and the last 4 of 190 (the coarse early stages are learned quickly; 8 even stages of
    125 gave 27.8 / 27.1 at 1 step over training seeds 0 / 1), pseudo-Huber / (t - r), theta- = stopgrad(theta),
    P_mean = 0 (more large t); dropout 0.2 on the teacher's network (ECT's CIFAR-10 setting), lr 1e-3, batch 128.
    1000 steps, half digits-cd's at about 2/3 of its compute (no teacher solver): 1-step FD-digits 23.2 / 19.2 /
    27.9 / 30.6 (seeds 0-3; CD 19.6 at 2000 steps), 2 steps 14.9 / 13.4 / 19.7 / 19.4; from the teacher the course
    ships (trained again 2026-12-02) 35.9 / 22.2 / 24.9 (seeds 0-2): the bar is not met. The README lists each change
    with its number (the old preset, without dropout, lr 5e-4, batch 64, 8 even stages: 48.8)."""
    net = dict(pick(DIGITS_NET, DIGITS_NET_FAST), dropout=0.2)
    return _digits(preset="digits-ect", kind="ect", init_from="runs/digits-edm", distance="pseudo_huber",
                   net_kwargs=net, ect_q=2.0, ect_short_stages=4, ect_short_steps=pick(60, 3),
                   ect_stage_steps=pick(190, 5), p_mean=0.0, steps=pick(1000, 40), batch_size=pick(128, 32), lr=1e-3,
                   lr_final=0.05, ema_decay=0.995)


def cifar10_ect(size: str = "full") -> TrainConfig:
    """ECT's one-A100-hour recipe (locuslab/ect run_ecm_1hour.sh) on the paper's NCSN++, from the imported EDM
    teacher (``cmlearn import-checkpoint edm_cifar10_ema --out runs/cifar10-edm-official``): q = 256 in one stage,
    pseudo-Huber / (t - r), RAdam lr 1e-4, batch 128, dropout 0.2, EMA 0.9993, 8000 steps (1.02M images)."""
    teacher = "runs/cifar10-edm-official" if size == "full" else "runs/cifar10-edm-smoke"
    return _cifar(size, preset="cifar10-ect", kind="ect", init_from=teacher, distance="pseudo_huber", ect_q=256.0,
                  ect_stage_steps=8000, optimizer="radam", lr=1e-4, batch_size=128, steps=8000, dropout=0.2,
                  ema_decay=0.9993)


PRESETS["toy-ect"] = toy_ect
PRESETS["digits-ect"] = digits_ect
PRESETS["cifar10-ect"] = cifar10_ect
PRESETS.update(CONTINUOUS_PRESETS)  # toy-sct, toy-scd, toy-meanflow (cmlearn.train.presets_continuous)
