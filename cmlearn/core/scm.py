"""sCM: continuous-time consistency models in TrigFlow, trained with a jvp tangent (sCT and sCD).

Source: C. Lu, Y. Song, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models", ICLR 2025
(arXiv 2410.11081), Sec. 2-4 and Algorithm 1; sCT reaches CIFAR-10 FID 2.85 at 1 step, 2.06 at 2.

* TrigFlow (Sec. 2): x_t = cos(t) x_0 + sin(t) z, z ~ N(0, sd^2 I), t in [0, pi/2]; PF ODE dx_t/dt = sd F(x_t/sd, t).
  It is the paper's VE process re-timed: sigma = sd tan(t) and x_t = cos(t) x_sigma, so a VE denoiser D gives
  dx_t/dt = (cos(t) x_t - D(x_t / cos t, sd tan t)) / sin(t) (sCD's teacher) and CT's estimate is cos(t) z - sin(t) x_0.
* Consistency function (Eq. 6): f_theta(x_t, t) = cos(t) x_t - sin(t) sd F_theta(x_t/sd, t), f(x, 0) = x.
  ``TrigFlowFunction`` also answers in the VE coordinates of the rest of cmlearn, f(x_sigma, sigma), so Algorithm 1
  (``cmlearn.core.sampling.sample``) samples it unchanged; 1 step from sigma = T = 80 is t = arctan(T / sd), sCM's T.
* Training (Algorithm 1): g = -cos^2(t) (sd F_- - dx_t/dt) - r cos(t) sin(t) (x_t + sd dF_-/dt), dF_-/dt a jvp with
  tangents (dx_t/dt, 1) of the stop-gradient network (``MLP.jvp`` for the toy MLP, else ``cmlearn.core.jvp``);
  r = min(1, k / H), the tangent warm-up; tangent normalization g <- g / (||g|| + c), c = 0.1; loss
  e^{w_phi(t)} / D ||F_theta - F_- - g||^2 - w_phi(t), with the adaptive weighting w_phi (``logvar``) learned with
  theta. t: sigma = e^tau / ... lognormal, tau ~ N(P_mean, P_std^2) (CIFAR-10: -1.0, 1.4), t = arctan(sigma / sd).
* The network's time input is t itself (c_noise(t) = t; Sec. 4.1 drops EDM's log-sigma conditioning and large
  Fourier scales for stability); ``time_dtype="float16"`` rounds it to half precision, one of the instabilities
  the paper names. ``time_input="log_tan"`` feeds c_noise(t) = log(tan t) / 4 = log(sigma / sd) / 4 instead (EDM's
  log-sigma, sigma clamped to >= eps): on 2D mixtures with modes 7x narrower than sd, t itself leaves the small-t
  end unresolved; the tangent stays bounded, as sin(t) cos(t) d c_noise / dt = 1/4 (cmlearn's toy-sct).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cmlearn.core.jvp import total_derivative
from cmlearn.core.parameterization import SIGMA_DATA, append_dims, as_time
from cmlearn.core.pfode import Field
from cmlearn.core.schedules import EPS, T_MAX, check_time_range
from cmlearn.core.stable_target import batch_posterior_mean

TIME_DTYPES = {"float32": torch.float32, "float16": torch.float16}
TIME_INPUTS = ("t", "log_tan")


def trig_time(sigma: torch.Tensor, *, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """TrigFlow time t = arctan(sigma / sd) of a VE noise level sigma (sCM Sec. 2)."""
    return torch.atan(sigma / sigma_data)


class TrigFlowFunction(nn.Module):
    """f_theta(x_t, t) = cos(t) x_t - sin(t) sd F_theta(x_t / sd, t) (sCM Eq. 6), with the adaptive weighting w_phi(t).

    ``forward(x, sigma)``: the same consistency function in VE coordinates (x = x_0 + sigma e), like
    ``ConsistencyFunction``; ``trig(x_t, t)`` and ``F(x_t, t)`` in TrigFlow's. Carries eps and T (VE).
    """

    def __init__(self, net: nn.Module, *, sigma_data: float = SIGMA_DATA, eps: float = EPS, T: float = T_MAX,
                 time_dtype: str = "float32", time_input: str = "t", weight_freqs: int = 8):
        super().__init__()
        check_time_range(eps=eps, T=T)
        if not sigma_data > 0 or time_dtype not in TIME_DTYPES or time_input not in TIME_INPUTS:
            raise ValueError(f"need sigma_data > 0, time_dtype in {sorted(TIME_DTYPES)} and time_input in "
                             f"{TIME_INPUTS}, got {sigma_data}, {time_dtype!r}, {time_input!r}")
        self.net, self.sigma_data, self.eps, self.T = net, sigma_data, float(eps), float(T)
        self.time_input = time_input
        self.time_dtype = TIME_DTYPES[time_dtype]
        self.register_buffer("weight_freqs", torch.arange(1, weight_freqs + 1, dtype=torch.float32))
        self.weight = nn.Linear(2 * weight_freqs, 1)
        nn.init.zeros_(self.weight.weight)
        nn.init.zeros_(self.weight.bias)

    def c_noise(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_noise(t), d c_noise / dt), (B,) each: t or log(tan t) / 4 (``time_input``; tan t floored at eps / sd,
        where the derivative is 0), t rounded to half precision first if ``time_dtype`` is float16 (the rounding
        passes the derivative through, as forward-mode AD does)."""
        c = t.to(torch.float16).to(t.dtype) if self.time_dtype == torch.float16 else t
        if self.time_input == "t":
            return c, torch.ones_like(c)
        tan, floor = torch.tan(c), self.eps / self.sigma_data
        dc = torch.where(tan >= floor, 0.25 / (torch.sin(c) * torch.cos(c)), torch.zeros_like(c))
        return 0.25 * torch.log(tan.clamp(min=floor)), dc  # time_input == "log_tan" (checked in __init__)

    def F(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The raw network F_theta(x_t / sd, c_noise(t)) (``c_noise``); (B, ...)."""
        return self.net(x_t / self.sigma_data, self.c_noise(t)[0]).to(x_t.dtype)

    def F_jvp(self, x_t: torch.Tensor, t: torch.Tensor, dx_dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, dF/dt) along (dx_dt, 1), x_t and dx_dt (B, ...), t (B,) -> two (B, ...): by the network's own forward
        mode where it has one (``MLP.jvp``, about 1.5x faster; its dF/dt carries no autograd), else by
        ``cmlearn.core.jvp.total_derivative`` of ``F`` (whose dF/dt does, outside no_grad). Every caller uses dF/dt
        as a stop-gradient tangent."""
        if not hasattr(self.net, "jvp"):
            return total_derivative(self.F, x_t, t, dx_dt)
        c, dc = self.c_noise(t)
        F, dF = self.net.jvp(x_t / self.sigma_data, c, dx_dt / self.sigma_data, dc)
        return F.to(x_t.dtype), dF.to(x_t.dtype)

    def trig(self, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """f_theta(x_t, t) in TrigFlow coordinates."""
        t = as_time(t, x_t)
        cos, sin = append_dims(torch.cos(t), x_t.ndim), append_dims(torch.sin(t), x_t.ndim)
        return cos * x_t - sin * self.sigma_data * self.F(x_t, t)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """f in VE coordinates: t = arctan(sigma / sd), x_t = cos(t) x (cmlearn's Algorithm 1 calls this)."""
        t = trig_time(as_time(sigma, x), sigma_data=self.sigma_data)
        return self.trig(append_dims(torch.cos(t), x.ndim) * x, t)

    def logvar(self, t: torch.Tensor) -> torch.Tensor:
        """w_phi(t) (B,): a linear layer on [cos(k t), sin(k t)], k = 1..8, zero at initialisation."""
        arg = t.float()[:, None] * self.weight_freqs[None]
        return self.weight(torch.cat([arg.cos(), arg.sin()], dim=1))[:, 0].to(t.dtype)


def teacher_velocity(denoiser: Field, x_t: torch.Tensor, t: torch.Tensor, *,
                     sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """dx_t/dt of TrigFlow's PF ODE from a VE denoiser D: (cos(t) x_t - D(x_t / cos t, sd tan t)) / sin(t)."""
    cos, sin = append_dims(torch.cos(t), x_t.ndim), append_dims(torch.sin(t), x_t.ndim)
    return (cos * x_t - denoiser(x_t / cos, sigma_data * torch.tan(t))) / sin


def sct_velocity(x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor, *, sigma_data: float = SIGMA_DATA,
                 stable_target: bool = False) -> torch.Tensor:
    """sCT's dx_t/dt at x_t = cos(t) x0 + sin(t) z (z ~ N(0, sd^2 I)): cos(t) z - sin(t) x0 (sCM Eq. 8's conditional
    tangent), or with ``stable_target`` that plus (x0 - xbar) / sin(t), xbar the batch's posterior mean of x0
    (``cmlearn.core.stable_target``): the batch's estimate of the PF ODE's (cos(t) x_t - E[x0 | x_t]) / sin(t).
    x0, z: (B, ...); t: (B,) radians in (0, pi/2] -> (B, ...)."""
    cos, sin = append_dims(torch.cos(t), x0.ndim), append_dims(torch.sin(t), x0.ndim)
    dx_dt = cos * z - sin * x0
    if not stable_target:
        return dx_dt
    sin_t = torch.sin(t).clamp_min(1e-6)
    xbar = batch_posterior_mean(x0, z / sigma_data, torch.cos(t) / (sigma_data * sin_t))
    return dx_dt + (x0 - xbar) / append_dims(sin_t, x0.ndim)


class SCMLoss:
    """sCT (``teacher=None``) or sCD (``teacher`` a VE denoiser D(x, sigma)), Algorithm 1 of sCM, called like the
    other losses: ``loss(model, target, x0, k=step, generator=g)`` -> (B,). ``model`` is a ``TrigFlowFunction``;
    its stop-gradient copy gives the target (``mu = 0``). ``tangent_norm`` c (0: off), ``warmup`` H iterations
    (0: none), ``adaptive``: the learned weighting. ``last_tangent_norm``: mean ||g|| (before normalization) of
    the last call. ``stable_target`` (sCT only; not in sCM): dx_t/dt = cos(t) z - sin(t) x0 gains
    (x0 - xbar) / sin(t), xbar the batch's posterior mean of x0 (``cmlearn.core.stable_target``), which makes it the
    batch's estimate of the PF ODE's (cos(t) x_t - xbar) / sin(t)."""

    def __init__(self, teacher: Field | None = None, *, sigma_data: float = SIGMA_DATA, p_mean: float = -1.0,
                 p_std: float = 1.4, tangent_norm: float = 0.1, warmup: int = 0, adaptive: bool = True,
                 eps: float = EPS, T: float = T_MAX, stable_target: bool = False):
        check_time_range(eps=eps, T=T)
        if p_std <= 0 or tangent_norm < 0 or warmup < 0 or (stable_target and teacher is not None):
            raise ValueError(f"need p_std > 0, tangent_norm >= 0, warmup >= 0 and no teacher with stable_target; got "
                             f"{p_std}, {tangent_norm}, {warmup}, stable_target={stable_target}")
        self.stable_target = bool(stable_target)
        self.teacher, self.sigma_data, self.p_mean, self.p_std = teacher, sigma_data, p_mean, p_std
        self.c, self.warmup, self.adaptive, self.eps, self.T, self.mu = tangent_norm, warmup, adaptive, eps, T, 0.0
        self.last_tangent_norm = float("nan")

    def num_steps(self, k: int) -> int:
        """0: continuous time (logged in the N column)."""
        return 0

    def target_decay(self, k: int) -> float:
        return 0.0

    def times(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """t = arctan(sigma / sd), log sigma ~ N(P_mean, P_std^2) clamped to [eps, T]; float64 (n,)."""
        sigma = torch.exp(self.p_mean + self.p_std * torch.randn(n, generator=generator, dtype=torch.float64))
        return trig_time(sigma.clamp(self.eps, self.T), sigma_data=self.sigma_data)

    @torch.no_grad()
    def tangent(self, m: nn.Module, x_t: torch.Tensor, t: torch.Tensor, dx_dt: torch.Tensor, *,
                r: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(sd F_-(x_t, t), g) under stop-gradient, g = -cos^2 (sd F_- - dx_t/dt) - r cos sin (x_t + sd dF_-/dt)
        (sCM Algorithm 1, unnormalized). With r = 1, g = cos(t) df_-/dt, the tangent of f_- along the PF ODE."""
        return self._tangent(*m.F_jvp(x_t, t, dx_dt), x_t, t, dx_dt, r=r)

    def _tangent(self, F: torch.Tensor, dF_dt: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                 dx_dt: torch.Tensor, *, r: float) -> tuple[torch.Tensor, torch.Tensor]:
        sd = self.sigma_data
        cos, sin = append_dims(torch.cos(t), x_t.ndim), append_dims(torch.sin(t), x_t.ndim)
        sF, dsF_dt = sd * F, sd * dF_dt
        return sF, -cos**2 * (sF - dx_dt) - r * cos * sin * (x_t + dsF_dt)

    def __call__(self, model: nn.Module, target: nn.Module | None, x0: torch.Tensor, *, k: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """e^{w(t)} / D ||F_theta - F_- - g||^2 - w(t) per sample (B,) (sCM Algorithm 1)."""
        m, sd = getattr(model, "module", model), self.sigma_data
        t = self.times(x0.shape[0], generator).to(device=x0.device, dtype=x0.dtype)
        z = sd * torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        cos, sin = append_dims(torch.cos(t), x0.ndim), append_dims(torch.sin(t), x0.ndim)
        x_t = cos * x0 + sin * z
        if self.teacher is None:
            dx_dt = sct_velocity(x0, z, t, sigma_data=sd, stable_target=self.stable_target)
        else:
            with torch.no_grad():
                dx_dt = teacher_velocity(self.teacher, x_t, t, sigma_data=sd).to(x0.dtype)
        r = min(1.0, k / self.warmup) if self.warmup else 1.0
        if hasattr(m.net, "jvp"):  # one pass (MLP.jvp): F with autograd, dF/dt without; F_- is F's value
            F, dF_dt = m.F_jvp(x_t, t, dx_dt)
            sF, g = self._tangent(F.detach(), dF_dt, x_t, t, dx_dt, r=r)
        else:
            devices = [x0.device] if x0.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # the online pass reuses the target's dropout mask
                sF, g = self.tangent(m, x_t, t, dx_dt, r=r)
            F = m.F(x_t, t)
        g_norm = append_dims(g.flatten(1).norm(dim=1), x0.ndim)
        self.last_tangent_norm = float(g_norm.mean())
        if self.c:
            g = g / (g_norm + self.c)
        err = (F - sF / sd - g).flatten(1).pow(2).sum(1) / math.prod(x0.shape[1:])
        w = m.logvar(t) if self.adaptive else torch.zeros_like(t)
        return torch.exp(w) * err - w
