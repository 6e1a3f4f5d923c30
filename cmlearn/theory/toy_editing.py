"""Quantitative zero-shot editing on 2D toys: "inpainting" one coordinate of a Gaussian mixture given the others.

For a mixture sum_k w_k N(mu_k, S_k), the conditional of the unknown coordinates given the known ones is again a
mixture, in closed form (``GaussianMixture.condition``). So Algorithm 4's samples (with Omega = 1 on the unknown
coordinates) can be compared with exact conditional samples, per conditioning value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.editing import inpaint
from cmlearn.core.sampling import default_taus
from cmlearn.core.schedules import EPS, T_MAX

__all__ = ["conditional_sample", "editing_distance", "edit_conditional", "wasserstein_1d"]


def conditional_sample(dist: GaussianMixture, values: torch.Tensor, *, known: int | Sequence[int] = 0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One exact sample of p(x | x[known] = values[i]) per row (Algorithm 4's target): (B,) or (B, a) -> (B, d).

    The returned full points have x[known] = values (columns in the order of ``known``).
    """
    mix = dist.condition(known, values)
    kn, fr = dist.split(known)
    out = torch.empty(len(mix.means), dist.dim, dtype=torch.float64)
    out[:, kn] = torch.as_tensor(values, dtype=torch.float64).reshape(len(out), len(kn))
    out[:, fr] = mix.sample(generator=generator, root="cholesky")
    return out


def edit_conditional(model: nn.Module, values: torch.Tensor, taus: Sequence[float], *, dim: int = 2,
                     known: int | Sequence[int] = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Algorithm 4 samples of p(x | x[known] = values) (Omega = 1 on the rest); (B,) or (B, a) -> (B, dim)."""
    idx = [known] if isinstance(known, int) else list(known)
    v = torch.as_tensor(values, dtype=torch.float32)
    v = v[:, None] if v.ndim == 1 else v
    y = torch.zeros(len(v), dim)
    y[:, idx] = v
    omega = torch.ones(dim)
    omega[idx] = 0.0
    return inpaint(model, y, omega, taus, generator=generator).double()


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> float:
    """W1 between two equal-size 1D samples (n,) and (n,): the mean gap of their sorted values."""
    a, b = torch.as_tensor(a).flatten().double(), torch.as_tensor(b).flatten().double()
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"need two non-empty samples of equal size, got {len(a)} and {len(b)}")
    return float((a.sort().values - b.sort().values).abs().mean())


def editing_distance(model: nn.Module, dist: GaussianMixture, *, steps: Sequence[int] = (1, 2, 4, 8),
                     n_conditions: int = 16, n_per: int = 1000, known: int = 0, seed: int = 0,
                     taus: dict[int, Sequence[float]] | None = None, eps: float = EPS, T: float = T_MAX) -> dict:
    """Mean W1 between Algorithm 4's and exact conditional samples of the other coordinate, per number of steps.

    The conditioning values are drawn from the data; the schedules are evenly spaced ``default_taus`` unless
    ``taus`` gives them. Returns {"steps": [...], "distance": [...], "floor": W1 between two independent exact
    samples, "conditions": (n_conditions,) values}.
    """
    if dist.dim != 2:
        raise ValueError(f"editing_distance is for 2D mixtures, got dim {dist.dim}")
    gen = torch.Generator().manual_seed(seed)
    cond = dist.sample(n_conditions, generator=gen)[:, known]
    values = cond.repeat_interleave(n_per)
    other = 1 - known
    exact = conditional_sample(dist, values, known=known, generator=gen)[:, other].view(n_conditions, n_per)
    exact2 = conditional_sample(dist, values, known=known, generator=gen)[:, other].view(n_conditions, n_per)
    floor = sum(wasserstein_1d(exact[i], exact2[i]) for i in range(n_conditions)) / n_conditions
    res = {"steps": [int(s) for s in steps], "distance": [], "floor": floor, "conditions": cond}
    for s in steps:
        ts = taus[s] if taus is not None and s in taus else default_taus(int(s), eps=eps, T=T)
        g = torch.Generator().manual_seed(seed + 1)
        x = edit_conditional(model, values, ts, known=known, generator=g)[:, other].view(n_conditions, n_per)
        res["distance"].append(sum(wasserstein_1d(x[i], exact[i]) for i in range(n_conditions)) / n_conditions)
    return res
