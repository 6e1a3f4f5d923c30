"""Preconditioning: c_skip, c_out, c_in, c_noise (paper Sec. 3 and App. C) and the EDM denoiser (Karras et al. 2022).

f_theta(x, t) = c_skip(t) x + c_out(t) F_theta(c_in(t) x, c_noise(t)), with c_skip(eps) = 1 and c_out(eps) = 0,
so the boundary condition f_theta(x, eps) = x holds exactly for any network F_theta.
"""

from __future__ import annotations

import torch
from torch import nn

from cmlearn.core.schedules import EPS, T_MAX, check_time_range

SIGMA_DATA = 0.5


def as_time(t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return t as a (B,) tensor on x's device and dtype (a scalar is broadcast to the batch)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
    return t


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a (B,) tensor broadcasts against a (B, ...) one of ``ndim`` dims."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def c_skip(t: torch.Tensor, *, sigma_data: float = SIGMA_DATA, eps: float = EPS) -> torch.Tensor:
    """c_skip(t) = sigma_data^2 / ((t - eps)^2 + sigma_data^2) (App. C)."""
    return sigma_data**2 / ((t - eps) ** 2 + sigma_data**2)


def c_out(t: torch.Tensor, *, sigma_data: float = SIGMA_DATA, eps: float = EPS) -> torch.Tensor:
    """c_out(t) = sigma_data (t - eps) / sqrt(sigma_data^2 + t^2) (App. C)."""
    return sigma_data * (t - eps) / torch.sqrt(sigma_data**2 + t**2)


def c_in(t: torch.Tensor, *, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """c_in(t) = 1 / sqrt(t^2 + sigma_data^2) (EDM input scaling)."""
    return 1.0 / torch.sqrt(t**2 + sigma_data**2)


def c_noise(t: torch.Tensor) -> torch.Tensor:
    """c_noise(t) = 0.25 log(t) (EDM; the official PyTorch code uses 1000 * 0.25 * log(t + 1e-44))."""
    return 0.25 * torch.log(t)


class _Preconditioned(nn.Module):
    """c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t)); c_skip, c_out shifted by eps when ``shift_by_eps``."""

    shift_by_eps = True

    def __init__(self, net: nn.Module, *, sigma_data: float = SIGMA_DATA, eps: float = EPS, T: float = T_MAX):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        check_time_range(eps=eps, T=T)
        self.net, self.sigma_data, self.eps, self.T = net, sigma_data, float(eps), float(T)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = as_time(t, x)
        n, sd = x.ndim, self.sigma_data
        shift = self.eps if self.shift_by_eps else 0.0
        skip = append_dims(c_skip(t, sigma_data=sd, eps=shift), n)
        out = append_dims(c_out(t, sigma_data=sd, eps=shift), n)
        inp = append_dims(c_in(t, sigma_data=sd), n)
        F = self.net(inp * x, c_noise(t))
        return skip * x + out * F.to(x.dtype)


class ConsistencyFunction(_Preconditioned):
    """f_theta(x, t) = c_skip(t) x + c_out(t) F_theta(c_in(t) x, c_noise(t)) on t in [eps, T] (paper Eq. 5, App. C).

    x: (B, ...), t: scalar or (B,); returns (B, ...). c_skip(eps) = 1 and c_out(eps) = 0, so f(x, eps) = x for any
    network. Carries its time range (``eps``, ``T``) so samplers and editing read it from the model. Raises
    ValueError for sigma_data <= 0 or not 0 < eps < T.
    """

    shift_by_eps = True


class Denoiser(_Preconditioned):
    """EDM denoiser (Karras et al. 2022): D(x, t) = c_skip x + c_out F(c_in x, c_noise), the same c_skip and c_out
    without the eps shift: c_skip = sd^2 / (t^2 + sd^2), c_out = t sd / sqrt(t^2 + sd^2).

    x: (B, ...), t: scalar or (B,) noise level; returns (B, ...), an estimate of E[x_0 | x_t = x]. Carries the
    time range (``eps``, ``T``) of its sampler.
    """

    shift_by_eps = False
