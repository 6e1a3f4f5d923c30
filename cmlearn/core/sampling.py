"""Sampling from a consistency model: Algorithm 1 (one step and multistep) and the teacher's ODE sampler."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cmlearn.core.pfode import solve
from cmlearn.core.schedules import EPS, T_MAX, karras_sigmas


def check_taus(taus: Sequence[float] | torch.Tensor, *, eps: float = EPS, T: float = T_MAX) -> list[float]:
    """Validate Algorithm 1's time points: non-empty, strictly decreasing, each in (eps, T]."""
    taus = [float(t) for t in (taus.tolist() if isinstance(taus, torch.Tensor) else taus)]
    if not taus:
        raise ValueError("taus is empty: give at least one time point (e.g. [T] for one-step sampling)")
    bad = [t for t in taus if not eps < t <= T]
    if bad:
        raise ValueError(f"taus must lie in (eps, T] = ({eps}, {T}], got {bad}")
    if any(b >= a for a, b in zip(taus, taus[1:])):
        raise ValueError(f"taus must be strictly decreasing, got {taus}")
    return taus


def default_taus(steps: int, *, eps: float = EPS, T: float = T_MAX, rho: float = 7.0) -> list[float]:
    """Evenly spaced (in t^(1/rho), like the Karras grid) time points for ``steps`` calls: [T, ...]."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return karras_sigmas(steps + 1, eps=eps, T=T, rho=rho).flip(0)[:-1].tolist()


@torch.no_grad()
def sample(model: nn.Module, n_or_xT: int | torch.Tensor, taus: Sequence[float] | torch.Tensor, *,
           shape: Sequence[int] | None = None, generator: torch.Generator | None = None,
           T: float = T_MAX) -> torch.Tensor:
    """Algorithm 1: x = f(x_{tau_1}, tau_1), then for each later tau: x = f(x + sqrt(tau^2 - eps^2) z, tau).

    ``taus`` holds every time at which f is called, usually starting at T ([T] = one step). Give the number of
    samples and ``shape`` (one sample's shape), or the starting noise x_T itself (already scaled by taus[0]).
    """
    eps = getattr(model, "eps", EPS)
    taus = check_taus(taus, eps=eps, T=T)
    p = next(model.parameters())
    if isinstance(n_or_xT, torch.Tensor):
        x = n_or_xT.to(p)
    else:
        if shape is None:
            shape = (model.net.dim,) if hasattr(model, "net") and hasattr(model.net, "dim") else None
        if shape is None:
            raise ValueError("give shape= (one sample's shape) when sampling from a number of samples")
        x = taus[0] * torch.randn((n_or_xT, *shape), generator=generator).to(p)
    x = model(x, taus[0])
    for tau in taus[1:]:
        z = torch.randn(x.shape, generator=generator).to(x)
        x = model(x + (tau**2 - eps**2) ** 0.5 * z, tau)
    return x


@torch.no_grad()
def heun_sample(denoiser, n_or_xT: int | torch.Tensor, *, N: int = 18, shape: Sequence[int] | None = None,
                eps: float = EPS, T: float = T_MAX, rho: float = 7.0, generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The teacher's sampler: Heun on the Karras grid from T to eps, 2(N - 1) evaluations (34 NFE for N = 18;
    EDM counts 35 because its grid ends at 0 with a final Euler step)."""
    if isinstance(n_or_xT, torch.Tensor):
        x = n_or_xT
    else:
        if shape is None:
            raise ValueError("give shape= when sampling from a number of samples")
        x = T * torch.randn((n_or_xT, *shape), generator=generator, dtype=dtype).to(device)
    return solve(x, karras_sigmas(N, eps=eps, T=T, rho=rho).flip(0), denoiser=denoiser, method="heun")


from cmlearn.core.search import SearchResult, search_timesteps  # noqa: E402,F401  (greedy + ternary search)
