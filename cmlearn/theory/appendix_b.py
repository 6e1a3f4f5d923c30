"""Appendix B, checked: the N -> infinity limits of CD and CT (Theorems 3, 5 and 6) with squared l2, lambda = 1.

Time grid t_n = tau((n - 1) / (N - 1)), tau the Karras map u -> (eps^(1/rho) + u (T^(1/rho) - eps^(1/rho)))^rho, so
t_{n+1} - t_n ~ tau'(u) / (N - 1) and, with u ~ U[0, 1] and t = tau(u), the paper's weight lambda / (tau^-1)'(t) is
tau'(u). With df/dt the total derivative of f_theta along dx/dt (``cmlearn.core.jvp``):

* Theorem 3 (Euler, theta- = theta): (N - 1)^2 L_CD^N -> E[tau'(u)^2 ||df_theta/dt||^2], dx/dt = -t s(x_t, t).
* Theorem 5 (theta- = stopgrad theta): (N - 1) grad L_CD^N -> grad E[tau'(u) 2 f_theta(x_t, t) . sg(df_-/dt)],
  the pseudo-objective (only its gradient means something), dx/dt = -t s(x_t, t) from the exact score.
* Theorem 6: (N - 1) grad L_CT^N -> the same with dx/dt = (x_t - x) / t = z: no score needed.

(d = ||.||^2 / dim here, as ``cmlearn.core.losses.l2``; its Hessian 2 I / dim is the paper's G = H.) The discrete
losses are drawn with common random numbers: the same x, z and u, the index n = floor(u (N - 1)) + 1, so the
gap to the continuous objective is discretization only and falls like 1 / N (order 1, ``fit_order``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.jvp import total_derivative
from cmlearn.core.losses import l2
from cmlearn.core.parameterization import append_dims
from cmlearn.core.pfode import drift, euler_step
from cmlearn.core.schedules import EPS, RHO, T_MAX, karras_sigmas
from cmlearn.theory.orders import fit_order


def tau(u: torch.Tensor, *, eps: float = EPS, T: float = T_MAX, rho: float = RHO) -> tuple[torch.Tensor, torch.Tensor]:
    """The Karras time map t = tau(u) on [0, 1] and its derivative tau'(u) (the grid is tau at (n - 1) / (N - 1))."""
    a, b = eps ** (1 / rho), T ** (1 / rho)
    base = a + u * (b - a)
    return base**rho, rho * base ** (rho - 1) * (b - a)


def _draws(dist: GaussianMixture, M: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = dist.sample(M, generator=g)
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    u = torch.rand(M, generator=g, dtype=torch.float64)
    return x, z, u


def _grad(loss: torch.Tensor, params: list) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def discrete_gradient(model: nn.Module, dist: GaussianMixture, N: int, *, kind: str, x, z, u, eps: float = EPS,
                      T: float = T_MAX) -> tuple[torch.Tensor, float]:
    """((N - 1) grad L^N, (N - 1)^2 L^N) of CD (Euler, exact score) or CT, theta- = stopgrad theta (Alg. 2, 3)."""
    ts = karras_sigmas(N, eps=eps, T=T).double()
    i = (u * (N - 1)).long().clamp(max=N - 2)
    t_cur, t_next = ts[i], ts[i + 1]
    x_next = x + append_dims(t_next, x.ndim) * z
    if kind == "cd":
        x_cur = euler_step(x_next, t_next, t_cur, denoiser=dist.denoiser)
    elif kind == "ct":
        x_cur = x + append_dims(t_cur, x.ndim) * z
    else:
        raise ValueError(f"kind must be 'cd' or 'ct', got {kind!r}")
    with torch.no_grad():
        target = model(x_cur, t_cur)
    loss = l2(model(x_next, t_next), target).mean()
    params = [p for p in model.parameters() if p.requires_grad]
    return (N - 1) * _grad(loss, params), (N - 1) ** 2 * float(loss.detach())


def continuous_gradient(model: nn.Module, dist: GaussianMixture, *, kind: str, x, z, u, eps: float = EPS,
                        T: float = T_MAX) -> tuple[torch.Tensor, float]:
    """(grad of the pseudo-objective E[tau'(u) 2 f . sg(df/dt)] / dim (Theorems 5, 6), L_CD^infinity of Theorem 3:
    E[tau'(u)^2 ||df/dt||^2] / dim); dx/dt = -t s for CD, z for CT."""
    t, dtau = tau(u, eps=eps, T=T)
    x_t = x + append_dims(t, x.ndim) * z
    dx_dt = drift(x_t, t, denoiser=dist.denoiser) if kind == "cd" else z
    with torch.no_grad():
        _, df_dt = total_derivative(model, x_t, t, dx_dt)
    pseudo = (append_dims(dtau, x.ndim) * 2 * model(x_t, t) * df_dt).flatten(1).mean(1).mean()
    params = [p for p in model.parameters() if p.requires_grad]
    value = float((append_dims(dtau, x.ndim) ** 2 * df_dt**2).flatten(1).mean(1).mean())
    return _grad(pseudo, params), value


def continuous_limit_check(model: nn.Module, dist: GaussianMixture, *, Ns: Sequence[int] = (40, 80, 160, 320, 640),
                           M: int = 20_000, seed: int = 0, eps: float = EPS, T: float = T_MAX) -> dict:
    """Relative gaps ||(N - 1) grad L^N - grad L^infinity|| / ||grad L^infinity|| for CD and CT (Theorems 5, 6),
    and |(N - 1)^2 L_CD^N - L_CD^infinity| / L_CD^infinity (Theorem 3, theta- = theta), with their fitted orders."""
    x, z, u = _draws(dist, M, seed)
    out: dict = {"Ns": list(Ns)}
    for kind in ("cd", "ct"):
        g_inf, v_inf = continuous_gradient(model, dist, kind=kind, x=x, z=z, u=u, eps=eps, T=T)
        gaps, vgaps = [], []
        for N in Ns:
            g_N, v_N = discrete_gradient(model, dist, N, kind=kind, x=x, z=z, u=u, eps=eps, T=T)
            gaps.append(float((g_N - g_inf).norm() / g_inf.norm()))
            vgaps.append(abs(v_N - v_inf) / v_inf)
        out[kind] = {"grad_gap": gaps, "order": fit_order(Ns, gaps)}
        if kind == "cd":
            out["cd"].update(value_gap=vgaps, value_order=fit_order(Ns, vgaps), value_inf=v_inf)
    return out
