"""Quality against the number of network calls (NFE): every way of turning a trained run into samples, measured at
the same budgets (notebook 11, ``benchmarks/nfe_sweep.py``).

A *method* is a label and a callable ``draw(n, nfe, generator) -> samples`` (or None where it cannot spend that
budget): an EDM teacher with an ODE sampler (``cmlearn.core.solvers``), a PD student (its own NFE only), or a
consistency model with Algorithm 1 (``generate``, so 2 steps on images use the paper's [T, 0.585]).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import torch

from cmlearn.core.sampling import prior_noise
from cmlearn.core.solvers import CALLS_PER_STEP, sample_ode
from cmlearn.train.evaluate import generate
from cmlearn.train.pd import generate_pd
from cmlearn.train.runs import Run

Draw = Callable[[int, int, torch.Generator], "torch.Tensor | None"]


@torch.no_grad()
def generate_nfe(run: Run, n: int, nfe: int, *, sampler: str | None = None, seed: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, *run.shape) samples of ``run`` spending ``nfe`` network calls: an EDM run with ``sampler`` (default
    heun) on the Karras grid, a PD student at its own NFE (ValueError otherwise), a CM with Algorithm 1."""
    gen = torch.Generator().manual_seed(seed) if generator is None else generator
    cfg = run.cfg
    if cfg.kind == "edm":
        x_T = prior_noise(n, run.shape, sigma=cfg.T, generator=gen)
        return sample_ode(run.model, x_T, sampler or "heun", nfe, eps=cfg.eps, T=cfg.T, rho=cfg.rho)
    if sampler is not None:
        raise ValueError(f"sampler={sampler!r} is for EDM teacher runs; {run.path} is a {cfg.kind!r} run")
    if cfg.kind == "pd":
        if nfe != cfg.pd_nfe:
            raise ValueError(f"{run.path} is a PD student of {cfg.pd_nfe} steps; it samples with {cfg.pd_nfe} NFE only")
        return generate_pd(run, n, generator=gen)
    return generate(run, n, steps=nfe, generator=gen)


def teacher_method(run: Run, sampler: str) -> Draw:
    """An EDM teacher with ``sampler``; None at budgets the sampler cannot spend (Heun: odd NFE)."""
    def draw(n: int, nfe: int, gen: torch.Generator):
        return None if nfe % CALLS_PER_STEP[sampler] else generate_nfe(run, n, nfe, sampler=sampler, generator=gen)

    return draw


def exact_method(dist, sampler: str) -> Draw:
    """A perfect teacher: ``dist``'s exact denoiser (float64) with ``sampler``; None where it cannot spend the
    budget."""
    def draw(n: int, nfe: int, gen: torch.Generator):
        if nfe % CALLS_PER_STEP[sampler]:
            return None
        x_T = prior_noise(n, (dist.dim,), generator=gen, dtype=torch.float64)
        return sample_ode(dist.denoiser, x_T, sampler, nfe)

    return draw


def pd_method(students: Mapping[int, Run], *, closest: bool = False) -> Draw:
    """PD's students {steps: Run}: the one whose NFE is the budget (or, with ``closest``, the largest below it)."""
    def draw(n: int, nfe: int, gen: torch.Generator):
        fits = [k for k in students if k == nfe or (closest and k < nfe)]
        return generate_nfe(students[max(fits)], n, max(fits), generator=gen) if fits else None

    return draw


def cm_method(run: Run, *, max_nfe: int = 8) -> Draw:
    """A consistency model with Algorithm 1 (``nfe`` calls, default time points), up to ``max_nfe`` calls."""
    def draw(n: int, nfe: int, gen: torch.Generator):
        return generate_nfe(run, n, nfe, generator=gen) if nfe <= max_nfe else None

    return draw


def sweep(methods: Mapping[str, Draw], nfes: Sequence[int], metrics: Mapping[str, Callable], *, n: int,
          seed: int = 0) -> dict:
    """Every method at every budget: {label: {nfe: {metric: value, ..., "s_per_10k": wall seconds per 10k
    samples}}}. All methods draw their noise from the same seed; budgets a method cannot spend are left out."""
    out: dict = {}
    for label, draw in methods.items():
        out[label] = {}
        for nfe in nfes:
            gen = torch.Generator().manual_seed(seed)
            t0 = time.perf_counter()
            x = draw(n, nfe, gen)
            seconds = time.perf_counter() - t0
            if x is None:
                continue
            x = x.detach().cpu()
            row = {name: float(fn(x)) for name, fn in metrics.items()}
            row["s_per_10k"] = seconds * 10_000 / n
            out[label][nfe] = row
    return out


def point_metrics(ref: torch.Tensor, *, n_energy: int = 3000, n_projections: int = 500) -> dict[str, Callable]:
    """Sliced W2 (all points) and energy distance (the first ``n_energy``; it is O(n^2) in memory) to ``ref``."""
    from cmlearn.metrics import energy_distance, sliced_wasserstein

    ref = ref.double()
    return {"sw": lambda x: sliced_wasserstein(x.double(), ref, n_projections=n_projections),
            "energy": lambda x: energy_distance(x[:n_energy].double(), ref[:n_energy])}


def digits_metrics() -> dict[str, Callable]:
    """FD-digits against the test split (``cmlearn.metrics.digits_eval.fd_digits``)."""
    from cmlearn.metrics.digits_eval import fd_digits

    return {"fd": lambda x: fd_digits(x, reference="test")}


def winners(results: Mapping[str, Mapping[int, Mapping[str, float]]], metric: str) -> dict[int, tuple[str, float]]:
    """{nfe: (best label, its value)} over the methods measured at that budget (lower is better)."""
    best: dict[int, tuple[str, float]] = {}
    for label, rows in results.items():
        for nfe, row in rows.items():
            if nfe not in best or row[metric] < best[nfe][1]:
                best[nfe] = (label, row[metric])
    return dict(sorted(best.items()))
