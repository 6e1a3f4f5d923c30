"""Preconditioning: c_skip, c_out, c_in, c_noise (paper Sec. 3 and App. C) and the EDM denoiser (Karras et al. 2022).

f_theta(x, t) = c_skip(t) x + c_out(t) F_theta(c_in(t) x, c_noise(t)), with c_skip(eps) = 1 and c_out(eps) = 0,
so the boundary condition f_theta(x, eps) = x holds exactly for any network F_theta.
"""

from __future__ import annotations

import torch
from torch import nn

from cmlearn.core.schedules import EPS

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


class ConsistencyFunction(nn.Module):
    """f_theta(x, t) = c_skip(t) x + c_out(t) F_theta(c_in(t) x, c_noise(t)) (paper Eq. 5, App. C)."""

    def __init__(self, net: nn.Module, *, sigma_data: float = SIGMA_DATA, eps: float = EPS):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.net, self.sigma_data, self.eps = net, sigma_data, eps

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = as_time(t, x)
        n = x.ndim
        skip = append_dims(c_skip(t, sigma_data=self.sigma_data, eps=self.eps), n)
        out = append_dims(c_out(t, sigma_data=self.sigma_data, eps=self.eps), n)
        inp = append_dims(c_in(t, sigma_data=self.sigma_data), n)
        F = self.net(inp * x, c_noise(t))
        return skip * x + out * F.to(x.dtype)


class Denoiser(nn.Module):
    """EDM denoiser (Karras et al. 2022): D(x, t) = c_skip x + c_out F(c_in x, c_noise), without the eps shift.

    c_skip = sd^2 / (t^2 + sd^2), c_out = t sd / sqrt(t^2 + sd^2).
    """

    def __init__(self, net: nn.Module, *, sigma_data: float = SIGMA_DATA):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.net, self.sigma_data = net, sigma_data

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = as_time(t, x)
        n, sd = x.ndim, self.sigma_data
        skip = append_dims(sd**2 / (t**2 + sd**2), n)
        out = append_dims(t * sd / torch.sqrt(t**2 + sd**2), n)
        inp = append_dims(c_in(t, sigma_data=sd), n)
        F = self.net(inp * x, c_noise(t))
        return skip * x + out * F.to(x.dtype)
