"""Build what a config names (network, data source, teacher) and load finished runs back (``Run``)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cmlearn.core.parameterization import ConsistencyFunction, Denoiser
from cmlearn.train.config import CONTINUOUS, TrainConfig


def data_shape(cfg: TrainConfig) -> tuple[int, ...]:
    """One training sample's shape, decided here once: (d,) for points, (1, 8, 8) digits, (3, 32, 32) CIFAR-10."""
    if cfg.data == "digits":
        from cmlearn.data.digits import SHAPE

        return SHAPE
    if cfg.data == "cifar10":
        from cmlearn.data.cifar10 import SHAPE

        return SHAPE
    if cfg.data.startswith("file:"):
        from cmlearn.data.sources import load_points

        return (int(load_points(cfg.data[5:]).shape[1]),)
    from cmlearn.data.toys2d import preset

    return (preset(cfg.data).dim,)


def build_net(cfg: TrainConfig, *, shape: Sequence[int] | None = None) -> nn.Module:
    """The backbone F_theta named by ``cfg.net`` with ``cfg.net_kwargs``; ``shape``: one sample's shape
    (default ``data_shape(cfg)``)."""
    shape = data_shape(cfg) if shape is None else tuple(shape)
    kw = dict(cfg.net_kwargs)
    if cfg.net == "mlp":
        from cmlearn.nets.mlp import MLP

        if len(shape) != 1:
            raise ValueError(f"net 'mlp' needs points of shape (d,), got one sample of shape {tuple(shape)}")
        kw.pop("dim", None)
        return MLP(int(shape[0]), **kw)
    if cfg.net == "unet":
        from cmlearn.nets.unet import UNet

        return UNet(**kw)
    if cfg.net == "ncsnpp":
        from cmlearn.nets.ncsnpp import NCSNpp

        return NCSNpp(**kw)
    raise ValueError(f"unknown net {cfg.net!r}; choose 'mlp', 'unet' or 'ncsnpp'")


def build_model(cfg: TrainConfig, *, shape: Sequence[int] | None = None) -> nn.Module:
    """Denoiser for EDM teachers and PD students, ConsistencyFunction (boundary condition built in) for CD/CT/iCT;
    both carry the config's eps and T."""
    net = build_net(cfg, shape=shape)
    if cfg.kind in CONTINUOUS:  # sCT / sCD (TrigFlow) and MeanFlow
        from cmlearn.train.continuous import continuous_model

        return continuous_model(cfg, net)
    if cfg.kind in ("edm", "pd"):
        return Denoiser(net, sigma_data=cfg.sigma_data, eps=cfg.eps, T=cfg.T)
    return ConsistencyFunction(net, sigma_data=cfg.sigma_data, eps=cfg.eps, T=cfg.T)


def build_source(cfg: TrainConfig):
    """The training data (``.batch(n, generator)``, ``.shape``): a 2D preset, a point file, digits or CIFAR-10."""
    from cmlearn.data.sources import MixtureSource, TensorSource, load_points

    if cfg.data.startswith("file:"):
        return TensorSource(load_points(cfg.data[5:]).float())
    if cfg.data == "digits":
        from cmlearn.data.digits import digits_tensor

        return TensorSource(digits_tensor("train"))
    if cfg.data == "cifar10":
        from cmlearn.data.cifar10 import cifar10_uint8

        return TensorSource(cifar10_uint8(cfg.data_root, train=True), flip=True)
    from cmlearn.data.toys2d import preset

    return MixtureSource(preset(cfg.data))


def reference_distribution(cfg: TrainConfig):
    """The known distribution of a 2D preset (None for data files and images)."""
    from cmlearn.data.toys2d import PRESETS, preset

    return preset(cfg.data) if cfg.data in PRESETS else None


def build_teacher(cfg: TrainConfig, source, device: torch.device):
    """The CD teacher denoiser D(x, t): exact (preset mixture), empirical (the data set), or a toy-edm RUN_DIR."""
    if cfg.teacher in ("exact", "empirical"):
        if cfg.teacher == "exact":
            dist = reference_distribution(cfg)
            if dist is None:
                raise ValueError(f"teacher 'exact' needs a 2D preset as data, got data={cfg.data!r}; "
                                 "use teacher=empirical or a learned teacher RUN_DIR")
        else:
            from cmlearn.core.distributions import EmpiricalDistribution

            if not hasattr(source, "data"):
                raise ValueError("teacher 'empirical' needs a finite data set (a --data file)")
            dist = EmpiricalDistribution(source.data.flatten(1))

        def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return dist.denoiser(x.double().cpu(), t.double().cpu()).to(x)

        return denoiser
    run = load_run(cfg.teacher, device=device)
    kinds = ("edm", "pd") if cfg.kind == "pd" else ("edm",)  # a PD round distills the previous round
    if run.cfg.kind not in kinds:
        raise ValueError(f"teacher run {cfg.teacher} is a {run.cfg.kind!r} run; a teacher must be an 'edm' run")
    return run.model


@dataclass
class Run:
    """A finished (or checkpointed) run: its config, its EMA model in eval mode, one sample's shape, where it
    lives and the step it reached."""

    cfg: TrainConfig
    model: nn.Module
    path: Path
    step: int
    shape: tuple[int, ...]


def load_run(run_dir: str | Path, *, device: torch.device | str = "cpu", weights: str = "ema") -> Run:
    """Load RUN_DIR/config.json and the EMA (or online, ``weights='model'``) weights of its latest checkpoint.

    Raises FileNotFoundError for a directory without config.json or checkpoint, RuntimeError for a corrupt one.
    """
    from cmlearn.train.checkpoint import load_checkpoint

    path = Path(run_dir)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a run directory (no config.json); train one with `cmlearn train`")
    cfg = TrainConfig.load(path / "config.json")
    ckpt = load_checkpoint(path / "checkpoints" / "latest.pt")
    if "shape" not in ckpt:
        raise RuntimeError(f"{path}: the checkpoint has no sample shape (written by an older cmlearn); retrain it")
    shape = tuple(int(s) for s in ckpt["shape"])
    model = build_model(cfg, shape=shape)
    model.load_state_dict(ckpt[weights])
    model.to(device).eval().requires_grad_(False)
    return Run(cfg=cfg, model=model, path=path, step=ckpt["step"], shape=shape)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy with requires_grad off (the target network theta- and the eval EMA)."""
    return copy.deepcopy(model).requires_grad_(False)
