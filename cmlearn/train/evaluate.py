"""Quality of a trained run on its own data: the toys' sample distance, digits' FD, CIFAR-10's FID."""

from __future__ import annotations

from pathlib import Path

import torch

from cmlearn.core.sampling import default_taus, heun_sample, sample
from cmlearn.metrics import mixture_nll, sliced_wasserstein
from cmlearn.train.config import TrainConfig
from cmlearn.train.runs import build_source, load_run, reference_distribution


def generate(run, n: int, *, steps: int = 1, taus=None, generator=None, shape=None) -> torch.Tensor:
    """n samples of a run's EMA model: Algorithm 1 for CMs (``taus`` or evenly spaced), Heun N = 18 for EDM."""
    cfg = run.cfg
    dev = next(run.model.parameters()).device
    if cfg.kind == "edm":
        return heun_sample(run.model, n, N=18, shape=shape, generator=generator, device=dev,
                           eps=cfg.eps, T=cfg.T)
    taus = default_taus(steps, eps=cfg.eps, T=cfg.T, rho=cfg.rho) if taus is None else taus
    return sample(run.model, n, taus, shape=shape, generator=generator, T=cfg.T)


def fresh_points(cfg: TrainConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """Reference points: fresh samples of a 2D preset, or the user's data file itself."""
    dist = reference_distribution(cfg)
    if dist is not None:
        return dist.sample(n, generator=generator)
    return build_source(cfg).data


def exact_heun_reference(cfg: TrainConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """Heun N = 18 samples with the preset's exact score (the bar CD is measured against)."""
    dist = reference_distribution(cfg)
    return heun_sample(dist.denoiser, n, N=18, shape=(dist.dim,), generator=generator, dtype=torch.float64,
                       eps=cfg.eps, T=cfg.T)


def evaluate_points(run, *, n: int = 20_000, seed: int = 0, n_projections: int = 1000) -> dict:
    """Sliced W2 to fresh data of 1- and 2-step samples (or EDM Heun samples), with the exact-score Heun bar."""
    gen = torch.Generator().manual_seed(seed)
    cfg = run.cfg
    ref = fresh_points(cfg, n, gen)
    shape = (ref.shape[1],)
    res: dict = {"run": str(run.path), "preset": cfg.preset, "data": cfg.data, "n": n, "seed": seed}
    plans = {"heun18": None} if cfg.kind == "edm" else {"1step": 1, "2step": 2}
    for name, steps in plans.items():
        x = generate(run, n, steps=steps or 1, generator=gen, shape=shape)
        res[f"sw_{name}"] = sliced_wasserstein(x, ref, n_projections=n_projections)
        dist = reference_distribution(cfg)
        if dist is not None:
            res[f"nll_{name}"] = mixture_nll(x, dist)
    if reference_distribution(cfg) is not None:
        res["sw_exact_heun18"] = sliced_wasserstein(exact_heun_reference(cfg, n, gen), ref, n_projections=n_projections)
        # the noise floor: two independent samples of the data distribution itself
        res["sw_floor"] = sliced_wasserstein(fresh_points(cfg, n, gen), ref, n_projections=n_projections)
    return res


def evaluate(run_dir: str | Path, *, n: int | None = None, seed: int = 0,
             inception_weights: str | None = None) -> dict:
    """The preset's quality metric for RUN_DIR (dispatches on the data kind).

    ``inception_weights``: a local file of the FID Inception weights (CIFAR-10), instead of the download.
    """
    run = load_run(run_dir)
    if run.cfg.data == "digits":
        from cmlearn.course.digits import evaluate_digits_run

        return evaluate_digits_run(run, n=n, seed=seed)
    if run.cfg.data == "cifar10":
        from cmlearn.metrics.fid import evaluate_cifar10_run, inception_extractor
        from cmlearn.runtime import default_device

        extractor = inception_extractor(default_device(), weights_path=inception_weights)
        return evaluate_cifar10_run(run, n=n, seed=seed, extractor=extractor)
    return evaluate_points(run, n=n or 20_000, seed=seed)
