"""Named training configurations. Full mode is what students run; CMLEARN_FAST=1 shrinks them via cmlearn.pick."""

from __future__ import annotations

from collections.abc import Callable

from cmlearn.config import TrainConfig
from cmlearn.runtime import pick

TOY_NET = {"width": 256, "depth": 4, "emb_dim": 64}


def toy_edm() -> TrainConfig:
    """A learned EDM teacher for 2D data (also the teacher for CD on a user's own point cloud)."""
    return TrainConfig(preset="toy-edm", kind="edm", net="mlp", net_kwargs=dict(TOY_NET), optimizer="adam",
                       steps=pick(6000, 300), batch_size=pick(1024, 256), lr=2e-3, lr_schedule="cosine",
                       lr_final=0.05, ema_decay=0.998, checkpoint_every=pick(2000, 100), log_every=pick(200, 50))


def toy_cd() -> TrainConfig:
    """Consistency distillation (Alg. 2) from the exact score, Heun, N = 18, target EMA mu = 0.95."""
    return TrainConfig(preset="toy-cd", kind="cd", teacher="exact", net="mlp", net_kwargs=dict(TOY_NET),
                       steps=pick(8000, 300), batch_size=pick(512, 256), lr=2e-3, lr_schedule="cosine",
                       lr_final=0.02, N=18, solver="heun", mu=0.95, distance="l2", ema_decay=0.998,
                       checkpoint_every=pick(1000, 100), log_every=pick(200, 50))


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "toy-edm": toy_edm,
    "toy-cd": toy_cd,
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
