"""Sampling, k-diffusion style (noise in, samples out): Algorithm 1 for a consistency model, Heun for a teacher.

Every sampler takes the starting noise ``x_T`` (already scaled by the first time) and returns samples of the same
shape on the same device as the model; ``prior_noise`` draws that noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cmlearn.core.pfode import solve
from cmlearn.core.schedules import EPS, RHO, T_MAX, karras_sigmas

Projection = Callable[[torch.Tensor], torch.Tensor]


def check_taus(taus: Sequence[float] | torch.Tensor, *, eps: float = EPS, T: float = T_MAX) -> list[float]:
    """Validate Algorithm 1's time points: non-empty, strictly decreasing, each in (eps, T]; returns floats."""
    taus = [float(t) for t in (taus.tolist() if isinstance(taus, torch.Tensor) else taus)]
    if not taus:
        raise ValueError("taus is empty: give at least one time point (e.g. [T] for one-step sampling)")
    bad = [t for t in taus if not eps < t <= T]
    if bad:
        raise ValueError(f"taus must lie in (eps, T] = ({eps}, {T}], got {bad}")
    if any(b >= a for a, b in zip(taus, taus[1:])):
        raise ValueError(f"taus must be strictly decreasing, got {taus}")
    return taus


def default_taus(steps: int, *, eps: float = EPS, T: float = T_MAX, rho: float = RHO) -> list[float]:
    """Evenly spaced (in t^(1/rho), like the Karras grid) time points for ``steps`` calls: [T, ...]."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return karras_sigmas(steps + 1, eps=eps, T=T, rho=rho).flip(0)[:-1].tolist()


MULTISTEP_INDEX = 6
"""The default second time point is t_{MULTISTEP_INDEX + 1} of the ascending N = 18 Karras grid (see
``multistep_taus``)."""


def multistep_taus(steps: int, *, eps: float = EPS, T: float = T_MAX, rho: float = RHO,
                   t2: float | None = None) -> list[float]:
    """Algorithm 1's default time points for ``steps`` calls: [T, t2, ...], the calls after the first spaced
    evenly in t^(1/rho) from ``t2`` down towards eps (eps itself left out): [T, t2] for 2 steps, [T, t2, 0.06]
    for 3 at the defaults.

    ``t2`` defaults to t_7 = 0.585 of the N = 18 Karras grid, the paper's 2-step value from its greedy + ternary
    search on CIFAR-10 (Sec. 6, App. C), near sigma_data = 0.5: re-noising there keeps the first call's coarse
    layout and lets later calls fix the finer scales. The evenly spaced ``default_taus`` put the second call at
    2.515 for 2 steps, where re-noising erases most of what the first call got right.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    t2 = float(karras_sigmas(18, eps=eps, T=T, rho=rho)[MULTISTEP_INDEX]) if t2 is None else float(t2)
    if not eps < t2 < T:
        raise ValueError(f"t2 must lie in (eps, T) = ({eps}, {T}), got t2={t2}")
    if steps == 1:
        return [T]
    return [T, *karras_sigmas(steps, eps=eps, T=t2, rho=rho).flip(0)[:-1].tolist()]


def prior_noise(n: int, shape: Sequence[int], *, sigma: float = T_MAX, generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """x_T = sigma z, z ~ N(0, I), shape (n, *shape), drawn on the CPU (same numbers on every device)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return sigma * torch.randn((n, *shape), generator=generator, dtype=dtype)


@torch.no_grad()
def sample(model: nn.Module, x_T: torch.Tensor, taus: Sequence[float] | torch.Tensor, *,
           generator: torch.Generator | None = None, project: Projection | None = None) -> torch.Tensor:
    """Algorithm 1: x = f(x_T, tau_1), then for each later tau: x = f(x + sqrt(tau^2 - eps^2) z, tau).

    ``x_T``: (B, ...) noise at tau_1 (``prior_noise(n, shape, sigma=taus[0])``). ``taus``: strictly decreasing
    times of the calls, in (eps, model.T]. ``project``: applied after every call (Algorithm 4's A^-1[...] step,
    see ``cmlearn.core.editing``). The re-noising z is drawn on the CPU from ``generator``. Returns (B, ...).
    """
    eps, T = float(getattr(model, "eps", EPS)), float(getattr(model, "T", T_MAX))
    taus = check_taus(taus, eps=eps, T=T)
    if not isinstance(x_T, torch.Tensor) or x_T.ndim < 2:
        raise ValueError(f"x_T must be a tensor of shape (batch, ...), got {getattr(x_T, 'shape', x_T)!r}")
    project = project or (lambda x: x)
    x = project(model(x_T.to(next(model.parameters())), taus[0]))
    for tau in taus[1:]:
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = project(model(x + (tau**2 - eps**2) ** 0.5 * z, tau))
    return x


@torch.no_grad()
def heun_sample(denoiser: Callable | nn.Module, x_T: torch.Tensor, *, N: int = 18, eps: float = EPS,
                T: float = T_MAX, rho: float = RHO) -> torch.Tensor:
    """The teacher's sampler: Heun on the Karras grid from T to eps, 2(N - 1) calls (34 NFE for N = 18; EDM
    counts 35 because its grid ends at 0 with a final Euler step). ``x_T``: (B, ...) = T z, moved to the
    denoiser's device and dtype when it is a network (an exact-score function takes x_T as given)."""
    if isinstance(denoiser, nn.Module):
        p = next(denoiser.parameters(), None)
        x_T = x_T.to(p) if p is not None else x_T
    return solve(x_T, karras_sigmas(N, eps=eps, T=T, rho=rho).flip(0), denoiser=denoiser, method="heun")


def paper_two_step_taus(*, eps: float = EPS, T: float = T_MAX, rho: float = RHO) -> list[float]:
    """[T, t_7] of the ascending N = 18 Karras grid (0.585 at the defaults): the paper's 2-step CD schedule, found
    by greedy + ternary search on CIFAR-10 FID (Sec. 6, App. C)."""
    return multistep_taus(2, eps=eps, T=T, rho=rho)


def _meanflow_grid(model: nn.Module, z: torch.Tensor, steps: int, *, own_velocity: bool) -> torch.Tensor:
    """``steps`` moves z_r = z_t - (t - r) w on an even grid of [0, 1] from t = 1: w = u(z_t, r, t) (a jump) or,
    with ``own_velocity``, w = u(z_t, t, t) (an Euler step on the model's instantaneous velocity)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    x = z.to(next(model.parameters()))
    ts = torch.linspace(1.0, 0.0, steps + 1).tolist()
    for t, r in zip(ts[:-1], ts[1:]):
        x = x - (t - r) * model(x, t if own_velocity else r, t)
    return x


@torch.no_grad()
def meanflow_sample(model: nn.Module, z: torch.Tensor, *, steps: int = 1) -> torch.Tensor:
    """MeanFlow sampling (Geng et al. 2025, Eq. 9 and Sec. 4.2): z ~ N(0, I) at t = 1, then ``steps`` jumps
    z_r = z_t - (t - r) u(z_t, r, t) on an even grid of [0, 1]; one step is x = z - u(z, 0, 1). (B, ...) in, out.
    Raises ValueError unless ``steps`` is an integer >= 1."""
    return _meanflow_grid(model, z, steps, own_velocity=False)


@torch.no_grad()
def meanflow_velocity_sample(model: nn.Module, z: torch.Tensor, *, steps: int) -> torch.Tensor:
    """Euler on a MeanFlow model's own instantaneous velocity v(z, t) = u(z, t, t) (the r = t boundary of MeanFlow
    Eq. 3): ``steps`` steps z <- z - (t - s) v(z, t) on an even grid from t = 1 to 0, ``steps`` NFE. Its limit as
    steps grow is the model's own flow ODE, where exact jumps would land. (B, ...) in, out. Raises ValueError
    unless ``steps`` is an integer >= 1."""
    return _meanflow_grid(model, z, steps, own_velocity=True)
