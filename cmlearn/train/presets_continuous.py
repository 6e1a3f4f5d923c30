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


def toy_sct() -> TrainConfig:
    """sCT: TrigFlow, jvp tangent of the stop-gradient model, tangent normalization c = 0.1, tangent warm-up over
    the first 10% of steps, adaptive weighting w_phi(t), lognormal sigma (P_mean = -1.0, P_std = 1.4; sCM App. G)."""
    return _toy(preset="toy-sct", kind="sct", net_kwargs=dict(TOY_NET), p_mean=-1.0, p_std=1.4, tangent_norm=0.1,
                tangent_warmup=pick(1200, 6))


def toy_scd() -> TrainConfig:
    """sCD from the exact score of the preset (``teacher=RUN_DIR`` for a learned toy-edm teacher); as toy-sct."""
    return _toy(preset="toy-scd", kind="scd", teacher="exact", net_kwargs=dict(TOY_NET), p_mean=-1.0, p_std=1.4,
                tangent_norm=0.1, tangent_warmup=pick(1200, 6))


def toy_meanflow() -> TrainConfig:
    """MeanFlow: u(z, r, t) conditioned on (t, t - r), logit-normal(-0.4, 1.0) times, 25% of pairs with r != t,
    adaptive loss weight p = 1 (Geng et al. 2025, Sec. 4)."""
    return _toy(preset="toy-meanflow", kind="meanflow", net_kwargs=dict(TOY_NET, n_times=2), p_mean=-0.4, p_std=1.0,
                mf_ratio=0.25)


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
    """MeanFlow on the 8x8 digits from scratch, digits-ct's budget: (t, t - r) conditioning, 25% r != t."""
    net = dict(DIGITS_NET, channels=pick(32, 16), n_times=2)
    return _digits(preset="digits-meanflow", kind="meanflow", net_kwargs=net, p_mean=-0.4, p_std=1.0, mf_ratio=0.25)


CONTINUOUS_PRESETS: dict[str, Callable[..., TrainConfig]] = {
    "toy-sct": toy_sct,
    "toy-scd": toy_scd,
    "toy-meanflow": toy_meanflow,
    "digits-sct": digits_sct,
    "digits-meanflow": digits_meanflow,
}
