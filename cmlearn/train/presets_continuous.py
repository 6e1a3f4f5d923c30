"""Presets of the continuous-time kinds (notebook 10): sCT / sCD (Lu & Song 2025) and MeanFlow (Geng et al. 2025).

Registered into ``cmlearn.train.presets.PRESETS``. Digits: digits-sct, digits-meanflow. The toy presets use
toy-ict's network and at most its 15000 steps (the issue's
budget), measured against the exact-score Heun N = 18 sampler (``benchmarks/continuous_toys.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from cmlearn.runtime import pick
from cmlearn.train.config import TrainConfig

TOY_NET = {"width": 256, "depth": 4, "emb_dim": 64}  # toy-ict's (cmlearn.train.presets.TOY_NET)


def _toy(**kw) -> TrainConfig:
    base = dict(net="mlp", optimizer="adam", steps=pick(12000, 60), batch_size=pick(512, 128), lr=2e-3,
                lr_schedule="cosine", lr_final=0.02, ema_decay=pick(0.999, 0.9), checkpoint_every=pick(3000, 60),
                log_every=pick(200, 20))
    base.update(kw)
    return TrainConfig(**base)


def _sct_toy() -> dict:
    """sCT/sCD's toy recipe (issue 14): x 10 input, log-sigma time input, lr 3e-4, EMA 0.9995. Each change measured at
    12000 steps on the eight Gaussians (1-step sliced W2, 20k samples; the exact Heun N = 18 scores 0.0140): sCM's
    recipe as first ported (c_noise = t, lr 2e-3, EMA 0.999, unit input) 0.497, 35x, its one step no better than one
    DDIM step; x 10 input (toy-edm's) with c_noise = log(sigma / sd) / 4 (``time_input``) 0.068, its 1-step distance
    swinging 0.07-0.3 between checkpoints (lr 2e-3); then lr 5e-4 0.0215 / 0.0269 (seeds 0 / 1), lr 3e-4 0.0212,
    lr 3e-4 with EMA 0.9995 0.0179 / 0.0187 (1.28x / 1.33x). Without the adaptive weighting (lr 2e-3) it ended at
    0.22; on a single Gaussian with the exact teacher and no normalization (constant lr 1e-3) it converged without
    the weighting and blew up with it."""
    return dict(net_kwargs=dict(TOY_NET, input_scale=10.0), time_input="log_tan", lr=3e-4,
                ema_decay=pick(0.9995, 0.9))


def toy_sct() -> TrainConfig:
    """sCT: TrigFlow, jvp tangent of the stop-gradient model, tangent normalization c = 0.1, tangent warm-up over
    the first 10% of steps, adaptive weighting w_phi(t), lognormal sigma (P_mean = -1.0, P_std = 1.4; sCM App. G),
    with the toy recipe ``_sct_toy`` (log-sigma time input, x 10 input, lr 3e-4, EMA 0.9995)."""
    return _toy(preset="toy-sct", kind="sct", p_mean=-1.0, p_std=1.4, tangent_norm=0.1,
                tangent_warmup=pick(1200, 6), **_sct_toy())


def toy_scd() -> TrainConfig:
    """sCD from the exact score of the preset (``teacher=RUN_DIR`` for a learned toy-edm teacher); as toy-sct but
    without the adaptive weighting. Measured at 12000 steps (1-step sliced W2, 20k samples; exact Heun N = 18 0.0140):
    with the weighting 0.132 (9.4x; 2 steps 0.063), without it 0.0129 (0.92x; 2 steps 0.0089; seed 1 the same).
    The likely reason: the exact teacher's tangent has no noise, so the residual can shrink towards 0 and the learned
    weight e^w grows with it (the blow-up seen on a single Gaussian, README); sCT's tangent is noisy."""
    return _toy(preset="toy-scd", kind="scd", teacher="exact", p_mean=-1.0, p_std=1.4, tangent_norm=0.1,
                tangent_warmup=pick(1200, 6), adaptive_weight=False, **_sct_toy())


def toy_meanflow() -> TrainConfig:
    """MeanFlow (Geng et al. 2025, Algorithm 1): u(z, r, t) conditioned on (t, t - r), with the toy recipe
    ``_meanflow_toy``: uniform (r, t), 75% of pairs with r != t, plain l2, x 10 input, lr 1e-3, and the batch's
    estimate of the marginal velocity in the target (``stable_target``)."""
    return _toy(preset="toy-meanflow", kind="meanflow", **_meanflow_toy())


def _meanflow_toy() -> dict:
    """MeanFlow's toy recipe (issue 14). 1-step sliced W2 on the eight Gaussians (20k samples; exact Heun N = 18:
    0.0138), 6000 steps unless said: the paper's ImageNet settings (logit-normal(-0.4, 1) times, 25% r != t,
    adaptive weight p = 1; lr 2e-3) 0.071 at 12000 steps; its CIFAR-10 ones (logit-normal(-2, 2), 75%, p = 0.75)
    0.105; l2 (p = 0) with 75% 0.199: the logit-normal almost never draws r near 0, the corner one step needs.
    Uniform times (the paper's Table 1 ablation) with l2 and 75%: 0.045 (p = 1: 0.057; lr 5e-4 with EMA 0.9995
    0.134); + x 10 input: at lr 5e-4 with EMA 0.9995 0.059, at lr 1e-3 (EMA 0.999) 0.040 (0.0407 measured again),
    at 12000 steps 0.032 (2.3x; seed 1 0.029), the previous preset. Then the stable target (``stable_target``: v
    in the target is the batch's estimate of the marginal velocity, not e - x; its loss falls from about 1.0 to
    0.01): 0.0246 at 6000 steps (lr 2e-3: 0.0247), 0.0168 at 9000, 0.0163 / 0.0159 at 12000 with training seeds
    0 / 1 (1.18x / 1.15x), the preset; not kept: EDM's c_skip / c_out on the endpoint (u = (z - D) / t) 0.0283 at
    6000. Not kept before it (12000 steps): EMA 0.9995 0.033, 90% r != t 0.035; (6000 steps): a log-t time input
    0.042, Fourier scale 4 0.27 (its loss stayed 10-20x the preset's); batch 2048 x 3000 steps 0.096."""
    return dict(net_kwargs=dict(TOY_NET, n_times=2, input_scale=10.0), mf_times="uniform", mf_ratio=0.75,
                mf_adaptive_p=0.0, lr=1e-3, p_mean=-0.4, p_std=1.0,  # p_mean / p_std: for mf_times=logit_normal
                stable_target=True)


# the digits UNet of cmlearn.train.presets (DIGITS_NET, DIGITS_NET_FAST), with a Fourier scale of 1: the time input
# is t in [0, pi/2] (sCM) or (t, t - r) in [0, 1] (MeanFlow), and scale 16 makes d F / d t blow up (notebook 10)
DIGITS_NET = {"img_resolution": 8, "in_channels": 1, "channels": 32, "channel_mult": [1, 2], "num_blocks": 1,
              "attn_resolutions": [], "fourier_scale": 1.0}


def _digits(**kw) -> TrainConfig:
    base = dict(data="digits", net="unet", net_kwargs=dict(DIGITS_NET, channels=pick(32, 16)), optimizer="adam",
                lr_schedule="cosine", lr_final=0.05, steps=pick(2000, 20), batch_size=pick(64, 32), lr=1e-3,
                ema_decay=0.995, checkpoint_every=pick(500, 20), log_every=pick(50, 10))
    base.update(kw)
    return TrainConfig(**base)


def digits_sct() -> TrainConfig:
    """sCT on the 8x8 digits from scratch, digits-ct's budget (2000 steps, batch 64): normalization c = 0.1,
    warm-up over the first 10% of steps, adaptive weighting, sCM's P_mean = -1.0, P_std = 1.4."""
    return _digits(preset="digits-sct", kind="sct", p_mean=-1.0, p_std=1.4, tangent_norm=0.1,
                   tangent_warmup=pick(200, 2))


def digits_meanflow() -> TrainConfig:
    """MeanFlow on the 8x8 digits from scratch, digits-ct's budget: (t, t - r) conditioning, uniform (r, t) with 75%
    r != t, the adaptive loss weight p = 1 (images: ||D||^2 concentrates). FD-digits at 2000 steps (1000 samples,
    one training seed): the paper's ImageNet times (logit-normal(-0.4, 1), 25%) 473.4 at 1 step (8s: 550 of 1000),
    17.40 at 2; uniform with 75% 71.9 at 1 step, 18.66 at 2, every digit present (the toy's finding,
    ``toy-meanflow``)."""
    net = dict(DIGITS_NET, channels=pick(32, 16), n_times=2)
    return _digits(preset="digits-meanflow", kind="meanflow", net_kwargs=net, p_mean=-0.4, p_std=1.0,
                   mf_times="uniform", mf_ratio=0.75)


CONTINUOUS_PRESETS: dict[str, Callable[..., TrainConfig]] = {
    "toy-sct": toy_sct,
    "toy-scd": toy_scd,
    "toy-meanflow": toy_meanflow,
    "digits-sct": digits_sct,
    "digits-meanflow": digits_meanflow,
}
