"""Helpers for the empirical checks of the paper's theory: THE order fit, and PF ODE solver errors (Theorem 1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cmlearn.core.distributions import Distribution
from cmlearn.core.pfode import reference_solve, solve
from cmlearn.core.schedules import EPS, T_MAX, karras_sigmas


def fit_order(x: Sequence[float], errors: Sequence[float]) -> float:
    """Order p in error ~ C x^-p, i.e. MINUS the least-squares slope of log error against log x; (n,), (n,) -> p.

    Sign convention: x is a size that makes the error fall (N, M, 1/dt), and p > 0 when it does: errors
    (1/N)^2 give p = 2. For errors ~ C dt^p (Theorem 1) pass x = 1/dt; an error that falls like M^-1/2 (Lemma 1)
    gives p = 1/2, so its log-log slope is -fit_order(M, error).
    """
    x, e = np.asarray(x, dtype=float), np.asarray(errors, dtype=float)
    if x.shape != e.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two equal-length sequences of at least 2 points, got {x.shape} and {e.shape}")
    if not ((x > 0).all() and (e > 0).all() and np.isfinite(x).all() and np.isfinite(e).all()):
        raise ValueError("fit_order needs positive, finite x and errors")
    return float(-np.polyfit(np.log(x), np.log(e), 1)[0])


def solver_errors(dist: Distribution, *, Ns: Sequence[int], methods: Sequence[str] = ("euler", "heun"),
                  n: int = 1000, seed: int = 0, eps: float = EPS, T: float = T_MAX) -> dict:
    """Mean and sup error at eps of Euler/Heun (Theorem 1's solvers) on each Karras grid against dopri5, x_T ~ p_T.

    Returns {"Ns": [...], "mean": {method: [...]}, "sup": {method: [...]}}, one value per N.
    """
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
