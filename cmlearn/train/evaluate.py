"""Quality of a trained run, one helper per job: ``generate`` its samples, ``sample_distance`` to points, and
``evaluate`` with the preset's metric (toys: sliced W2 and NLL; digits: FD-digits; CIFAR-10: FID, paper protocol).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from cmlearn.core.meanflow import MeanFlowModel
from cmlearn.core.sampling import (
    heun_sample,
    meanflow_sample,
    multistep_taus,
    prior_noise,
    sample,
)
from cmlearn.metrics import mixture_nll, sliced_wasserstein
from cmlearn.train.config import TrainConfig
from cmlearn.train.runs import Run, build_source, load_run, reference_distribution


def run_taus(cfg: TrainConfig, steps: int) -> list[float]:
    """Algorithm 1's default time points for a run, on every data set: ``multistep_taus`` ([T, 0.585, ...]; for 2
    steps the paper's searched [T, 0.585]): 2 and 3 steps beat 1 on the shipped toy-cd run
    (tests/test_multistep_taus.py); the evenly spaced ``default_taus`` made 2 iCT steps worse than 1 on new data
    (benchmarks/toy_quality.py)."""
    return multistep_taus(steps, eps=cfg.eps, T=cfg.T, rho=cfg.rho)


@torch.no_grad()
def generate(run: Run, n: int, *, steps: int = 1, taus: list[float] | None = None,
             generator: torch.Generator | None = None, seed: int = 0) -> torch.Tensor:
    """(n, *run.shape) samples of a run's model on its device: Algorithm 1 at ``taus`` (default ``run_taus``) for
    consistency models, Heun N = 18 (34 NFE) for EDM teachers, DDIM on its own pd_nfe steps for a PD student.
    Noise from ``generator``, else from ``seed``."""
    gen = torch.Generator().manual_seed(seed) if generator is None else generator
    cfg = run.cfg
    if cfg.kind == "pd":
        from cmlearn.train.pd import generate_pd

        return generate_pd(run, n, generator=gen)
    if cfg.kind == "meanflow":
        return _meanflow(run.model, n, run.shape, steps=steps, taus=taus, generator=gen)
    if cfg.kind == "edm":
        return heun_sample(run.model, prior_noise(n, run.shape, sigma=cfg.T, generator=gen), N=18, eps=cfg.eps,
                           T=cfg.T, rho=cfg.rho)
    taus = run_taus(cfg, steps) if taus is None else [float(t) for t in taus]
    return sample(run.model, prior_noise(n, run.shape, sigma=taus[0], generator=gen), taus, generator=gen)


def sample_distance(model: nn.Module, ref: torch.Tensor, *, steps: int = 1, taus: list[float] | None = None,
                    seed: int = 0, n_projections: int = 200) -> float:
    """Sliced W2 between len(ref) Algorithm-1 samples of a consistency model (``taus``, default
    ``multistep_taus(steps)``) and the reference points ``ref`` (N, d)."""
    gen = torch.Generator().manual_seed(seed)
    if isinstance(model, MeanFlowModel):
        x = _meanflow(model, len(ref), ref.shape[1:], steps=steps, taus=taus, generator=gen)
        return sliced_wasserstein(x.double().cpu(), ref.double(), n_projections=n_projections)
    taus = multistep_taus(steps, eps=model.eps, T=model.T) if taus is None else taus
    x = sample(model, prior_noise(len(ref), ref.shape[1:], sigma=taus[0], generator=gen), taus, generator=gen)
    return sliced_wasserstein(x.double().cpu(), ref.double(), n_projections=n_projections)


def _meanflow(model: nn.Module, n: int, shape, *, steps: int, taus, generator: torch.Generator) -> torch.Tensor:
    """MeanFlow samples: z ~ N(0, I), ``steps`` jumps on an even grid of [0, 1] (it has no Algorithm-1 taus)."""
    if taus is not None:
        raise ValueError("a MeanFlow run is sampled on an even grid of [0, 1]: give steps, not taus")
    return meanflow_sample(model, prior_noise(n, shape, sigma=1.0, generator=generator), steps=steps)


def fresh_points(cfg: TrainConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """Reference points: fresh samples of a 2D preset, or the user's data file itself."""
    dist = reference_distribution(cfg)
    if dist is not None:
        return dist.sample(n, generator=generator)
    return build_source(cfg).data


def exact_heun_reference(cfg: TrainConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """Heun N = 18 samples with the preset's exact score (the bar CD is measured against), float64."""
    dist = reference_distribution(cfg)
    x_T = prior_noise(n, (dist.dim,), sigma=cfg.T, generator=generator, dtype=torch.float64)
    return heun_sample(dist.denoiser, x_T, N=18, eps=cfg.eps, T=cfg.T, rho=cfg.rho)


def evaluate_points(run: Run, *, n: int = 20_000, seed: int = 0, n_projections: int = 1000) -> dict:
    """Sliced W2 to fresh data of 1- and 2-step samples (or EDM Heun samples), with the exact-score Heun bar and
    the data-vs-data floor when the data set is a known preset."""
    gen = torch.Generator().manual_seed(seed)
    cfg = run.cfg
    ref = fresh_points(cfg, n, gen)
    dist = reference_distribution(cfg)
    res: dict = {"run": str(run.path), "preset": cfg.preset, "data": cfg.data, "n": n, "seed": seed}
    plans = {"heun18": 1} if cfg.kind == "edm" else {"ddim": 1} if cfg.kind == "pd" else {"1step": 1, "2step": 2}
    for name, steps in plans.items():
        x = generate(run, n, steps=steps, generator=gen).cpu()
        res[f"sw_{name}"] = sliced_wasserstein(x, ref, n_projections=n_projections)
        if dist is not None:
            res[f"nll_{name}"] = mixture_nll(x, dist)
    if dist is not None:
        res["sw_exact_heun18"] = sliced_wasserstein(exact_heun_reference(cfg, n, gen), ref, n_projections=n_projections)
        # the noise floor: two independent samples of the data distribution itself
        res["sw_floor"] = sliced_wasserstein(fresh_points(cfg, n, gen), ref, n_projections=n_projections)
    return res


def evaluate_digits(run: Run, *, n: int | None = None, seed: int = 0) -> dict:
    """FD-digits (vs test) and class histograms of 1- and 2-step CM samples (``run_taus``), or an EDM run's
    Heun N = 18 samples; ``n`` samples (default 1000) from the seed ``seed``."""
    from cmlearn.metrics.digits_eval import class_histogram, fd_digits

    if run.cfg.data != "digits":
        raise ValueError(f"run {run.path} trained on data={run.cfg.data!r}, not 'digits'")
    n = 1000 if n is None else int(n)
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    res: dict = {"run": str(run.path), "preset": run.cfg.preset, "kind": run.cfg.kind, "n": n, "seed": seed,
                 "step": run.step}
    kind = run.cfg.kind
    plans = {"heun18": 1} if kind == "edm" else {"ddim": 1} if kind == "pd" else {"1step": 1, "2step": 2}
    for name, steps in plans.items():
        x = generate(run, n, steps=steps, seed=seed).cpu()
        res[f"fd_{name}"] = fd_digits(x, reference="test")
        res[f"hist_{name}"] = class_histogram(x).tolist()
    return res


def evaluate_cifar10(run: Run, *, n: int | None = None, seed: int = 0, batch_size: int = 500,
                     extractor=None, taus2: list[float] | None = None) -> dict:
    """FID of a CIFAR-10 run (EMA weights) with the paper's protocol (``cmlearn.metrics.fid``): 1 and 2 steps
    (default [T, 0.585]) for CMs, Heun N = 18 for EDM teachers. ``extractor``: default the FID Inception."""
    from cmlearn.metrics import fid as F
    from cmlearn.runtime import default_device

    cfg, device = run.cfg, default_device()
    n = F.PAPER_NUM_SAMPLES if n is None else n
    run.model.to(device)
    extractor = F.inception_extractor(device) if extractor is None else extractor
    ref = F.reference_statistics(cfg.data_root, extractor)
    gen = torch.Generator().manual_seed(seed)
    taus2 = run_taus(cfg, 2) if taus2 is None else taus2
    plans = {"heun18": {}} if cfg.kind == "edm" else {"1step": {"steps": 1}, "2step": {"taus": taus2}}
    res: dict = {"run": str(run.path), "preset": cfg.preset, "n": n, "seed": seed,
                 "extractor": getattr(extractor, "name", ""), "reference": ref.source,
                 "comparable_to_paper": F.check_protocol(n, ref)}
    for key, kw in plans.items():
        def sample_fn(b, kw=kw):
            return generate(run, b, generator=gen, **kw).cpu()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", F.NotComparableWarning)  # already warned once above
            res[f"fid_{key}"] = F.fid_from_sampler(sample_fn, n, extractor, ref, batch_size=batch_size)
    if cfg.kind != "edm":
        res["taus_2step"] = [float(t) for t in taus2]
    return res


def write_evaluation(run_dir: str | Path, res: dict) -> Path:
    """RUN_DIR/evaluation.json in one format (sorted keys; "run" as the directory's name, not a machine's path), so
    re-evaluating a shipped run from anywhere rewrites its file byte for byte."""
    path = Path(run_dir) / "evaluation.json"
    res = {**res, "run": Path(run_dir).resolve().name} if "run" in res else res
    path.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    return path


def evaluate(run_dir: str | Path, *, n: int | None = None, seed: int = 0,
             inception_weights: str | None = None) -> dict:
    """The preset's quality metric for RUN_DIR (dispatches on the data kind); ``inception_weights``: a local
    file of the FID Inception weights (CIFAR-10) instead of the download."""
    run = load_run(run_dir)
    if run.cfg.data == "digits":
        return evaluate_digits(run, n=n, seed=seed)
    if run.cfg.data == "cifar10":
        from cmlearn.metrics.fid import inception_extractor
        from cmlearn.runtime import default_device

        extractor = inception_extractor(default_device(), weights_path=inception_weights)
        return evaluate_cifar10(run, n=n, seed=seed, extractor=extractor)
    return evaluate_points(run, n=n or 20_000, seed=seed)
