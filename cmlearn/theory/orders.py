"""Helpers for the empirical checks of the paper's theory: solver errors and fitted orders of convergence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cmlearn.core.pfode import reference_solve, solve
from cmlearn.core.schedules import karras_sigmas


def fit_order(x: Sequence[float], errors: Sequence[float]) -> float:
    """Order p in error ~ C x^-p: minus the least-squares slope of log error against log x (x = N or 1/dt)."""
    x, e = np.asarray(x, dtype=float), np.asarray(errors, dtype=float)
    if x.shape != e.shape or len(x) < 2:
        raise ValueError(f"need two equal-length sequences of at least 2 points, got {x.shape} and {e.shape}")
    if (x <= 0).any() or (e <= 0).any():
        raise ValueError("fit_order needs positive x and errors")
    return float(-np.polyfit(np.log(x), np.log(e), 1)[0])


def solver_errors(dist, *, Ns: Sequence[int], methods: Sequence[str] = ("euler", "heun"), n: int = 1000,
                  seed: int = 0, eps: float = 0.002, T: float = 80.0) -> dict:
    """Mean and sup error at eps of Euler/Heun on the Karras grid of each N against dopri5, from x_T ~ p_T."""
    gen = torch.Generator().manual_seed(seed)
    xT = dist.sample(n, generator=gen) + T * torch.randn(n, dist.dim, dtype=torch.float64, generator=gen)
    ref = reference_solve(xT, T, eps, score=dist.score)
    out: dict = {"Ns": list(Ns), "mean": {}, "sup": {}}
    for m in methods:
        errs = [(solve(xT, karras_sigmas(N, eps=eps, T=T).flip(0), score=dist.score, method=m) - ref).norm(dim=1)
                for N in Ns]
        out["mean"][m] = [float(e.mean()) for e in errs]
        out["sup"][m] = [float(e.max()) for e in errs]
    return out
