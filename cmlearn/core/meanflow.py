"""MeanFlow: one-step generation by learning the average velocity u(z, r, t) of the flow-matching ODE.

Source: Z. Geng, M. Deng, X. Bai, J. Z. Kolter, K. He, "Mean Flows for One-step Generative Modeling" (2025,
arXiv 2505.13447), Sec. 3-4, Algorithm 1; its CIFAR-10/ImageNet 1-NFE FID 2.92 is from scratch.

* Flow path (rectified flow): z_t = (1 - t) x + t e, e ~ N(0, I), t in [0, 1]; conditional velocity v = e - x.
  The marginal velocity v(z, t) = E[e - x | z_t = z] drives the ODE dz/dt = v(z, t) from data (t = 0) to noise.
* Average velocity (Eq. 3): u(z_t, r, t) = 1 / (t - r) int_r^t v(z_s, s) ds, so z_r = z_t - (t - r) u(z_t, r, t)
  exactly, and one step from noise is x = z - u(z, 0, 1) (Eq. 9 with r = 0, t = 1).
* The MeanFlow identity (Eq. 6): u = v - (t - r) du/dt, du/dt = v d_z u + d_t u (r held fixed), a jvp with
  tangents (v, 0, 1) (``cmlearn.core.jvp``). Loss (Eq. 9): || u_theta(z_t, r, t) - sg(v - (t - r) du_theta/dt) ||^2
  with the conditional v = e - x in place of the marginal one, as flow matching does.
* Times: t, r from a logit-normal lognorm(-0.4, 1.0) (``sampler="logit_normal"``, the paper's ImageNet choice) or
  uniform on [0, 1] (``"uniform"``, in its Table 1 ablation), sorted so t >= r; a fraction ``ratio`` (paper: 25% on
  ImageNet, 75% on CIFAR-10) keeps r != t, the rest r = t (plain flow matching). The network sees (t, t - r)
  (Table 1c). On the 2D toys the logit-normal almost never draws r near 0 (about 1% of pairs below 0.05), the
  end one step from noise needs: uniform times learn u(z, 0, 1) far better (``toy-meanflow``).
* Adaptive loss weight (Sec. 4.3): loss = ||D||^2 / sg(||D||^2 + c)^p with p = 1, c = 1e-3.
* ``stable_target=True`` (not in the MeanFlow paper): the conditional v = e - x is replaced by the marginal velocity
  estimated from the batch, v = (z - xbar) / t with xbar the batch's posterior mean of x (the stable target field of
  Xu et al., ICLR 2023; ``cmlearn.core.stable_target``). Equal to e - x where t is small (one weight is 1) and far
  less noisy where t is large, the pairs the one-step map u(z, 0, 1) is built from.

``exact_velocity`` and ``exact_average_velocity`` give the ground truth on a Gaussian mixture: with sigma =
t / (1 - t), z_t / (1 - t) = x + sigma e is the paper's VE x_sigma, so E[x | z_t] = D(z_t / (1 - t), sigma)
and v(z, t) = (z - D(z / (1 - t), t / (1 - t))) / t, integrated from t to r by dopri5 (torchdiffeq).
"""

from __future__ import annotations

import torch
from torch import nn

from cmlearn.core.jvp import total_derivative
from cmlearn.core.parameterization import append_dims, as_time
from cmlearn.core.pfode import Field
from cmlearn.core.stable_target import batch_posterior_mean

T_LO, T_HI = 1e-5, 1.0 - 1e-7  # where the exact velocity is evaluated: its 0/0 and 1/0 limits are finite


class MeanFlowModel(nn.Module):
    """u_theta(z, r, t) = F_theta(z, (t, t - r)) (MeanFlow Table 1c): ``net`` takes x (B, ...) and (B, 2) times."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor, r: float | torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        r, t = as_time(r, z), as_time(t, z)
        return self.net(z, torch.stack([t, t - r], dim=1)).to(z.dtype)

    def total_derivative(self, z: torch.Tensor, r: float | torch.Tensor, t: float | torch.Tensor,
                         dz_dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, du/dt) along (dz_dt, 1) with r held fixed (MeanFlow Eq. 8); z, dz_dt (B, ...), r, t scalars or (B,)
        -> two (B, ...): by the network's own forward mode where it has one (``MLP.jvp``, about 1.8x faster; its
        du/dt carries no autograd), else by ``cmlearn.core.jvp.total_derivative`` (whose du/dt does, outside
        no_grad). The loss uses du/dt only inside a stop-gradient target."""
        r, t = as_time(r, z), as_time(t, z)
        if not hasattr(self.net, "jvp"):
            return total_derivative(lambda zz, ts: self(zz, r, ts), z, t, dz_dt)
        c = torch.stack([t, t - r], dim=1)
        u, du = self.net.jvp(z, c, dz_dt, torch.ones_like(c))  # d(t, t - r)/dt = (1, 1)
        return u.to(z.dtype), du.to(z.dtype)


TIME_SAMPLERS = ("logit_normal", "uniform")
P_MEAN, P_STD = -0.4, 1.0  # the paper's logit-normal on ImageNet (Table 1)


def sample_times(n: int, *, sampler: str = "logit_normal", p_mean: float = P_MEAN, p_std: float = P_STD,
                 ratio: float = 0.25, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t), float64 (n,): two draws (logit-normal(p_mean, p_std) or uniform on [0, 1], ``sampler``) sorted so
    r <= t; with probability 1 - ``ratio``, r = t. Raises ValueError on an unknown sampler, a ratio outside [0, 1]
    or p_std <= 0 (checked for either sampler)."""
    if not 0 <= ratio <= 1 or p_std <= 0 or sampler not in TIME_SAMPLERS:
        raise ValueError(f"need 0 <= ratio <= 1, p_std > 0 and sampler in {TIME_SAMPLERS}, got ratio={ratio}, "
                         f"p_std={p_std}, sampler={sampler!r}")
    if sampler == "uniform":
        s = torch.rand(2, n, generator=generator, dtype=torch.float64)
    else:
        s = torch.sigmoid(p_mean + p_std * torch.randn(2, n, generator=generator, dtype=torch.float64))
    r, t = s.min(0).values, s.max(0).values
    keep = torch.rand(n, generator=generator, dtype=torch.float64) < ratio
    return torch.where(keep, r, t), t


def batch_velocity(x0: torch.Tensor, e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The stable-target estimate of the marginal velocity at z_t = (1 - t) x0 + t e: (z_t - xbar) / t with xbar
    the batch's posterior mean of x (``cmlearn.core.stable_target``, snr = (1 - t) / t), written as
    (e - x0) + (x0 - xbar) / t so that small t loses no digits. x0, e: (B, ...); t: (B,), clamped to >= 1e-5 ->
    (B, ...)."""
    t = t.clamp_min(T_LO)
    xbar = batch_posterior_mean(x0, e, (1 - t) / t)
    return (e - x0) + (x0 - xbar) / append_dims(t, x0.ndim)


class MeanFlowLoss:
    """MeanFlow's objective (Algorithm 1), called like the other losses: ``loss(model, target, x0, k=step,
    generator=g)`` -> (B,). The target is the model itself under stop-gradient (``mu = 0``)."""

    def __init__(self, *, sampler: str = "logit_normal", p_mean: float = P_MEAN, p_std: float = P_STD,
                 ratio: float = 0.25, adaptive_p: float = 1.0, adaptive_c: float = 1e-3,
                 stable_target: bool = False):
        sample_times(1, sampler=sampler, p_mean=p_mean, p_std=p_std, ratio=ratio)  # validates
        if adaptive_p < 0 or adaptive_c <= 0:
            raise ValueError(f"need adaptive_p >= 0 and adaptive_c > 0, got {adaptive_p}, {adaptive_c}")
        self.stable_target = bool(stable_target)
        self.sampler, self.p_mean, self.p_std, self.ratio = sampler, p_mean, p_std, ratio
        self.adaptive_p, self.adaptive_c, self.mu = adaptive_p, adaptive_c, 0.0

    def num_steps(self, k: int) -> int:
        """0: continuous time (logged in the N column)."""
        return 0

    def target_decay(self, k: int) -> float:
        return 0.0

    def __call__(self, model: nn.Module, target: nn.Module | None, x0: torch.Tensor, *, k: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """||u - sg(v - (t - r) du/dt)||^2 / sg(... + c)^p per sample (B,)."""
        r, t = sample_times(x0.shape[0], sampler=self.sampler, p_mean=self.p_mean, p_std=self.p_std,
                            ratio=self.ratio, generator=generator)
        r, t = r.to(device=x0.device, dtype=x0.dtype), t.to(device=x0.device, dtype=x0.dtype)
        e = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        tt = append_dims(t, x0.ndim)
        z = (1 - tt) * x0 + tt * e
        v = batch_velocity(x0, e, t) if self.stable_target else e - x0
        if isinstance(model, MeanFlowModel):
            u, du_dt = model.total_derivative(z, r, t, v)
        else:  # any other model: the generic forward mode through its forward
            u, du_dt = total_derivative(lambda zz, ts: model(zz, r, ts), z, t, v)
        u_tgt = (v - append_dims(t - r, x0.ndim) * du_dt).detach()
        err = (u - u_tgt).flatten(1).pow(2).sum(1)
        return err / (err.detach() + self.adaptive_c) ** self.adaptive_p


def exact_velocity(denoiser: Field, z: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """v(z, t) = E[e - x | z_t = z] = (z - D(z / (1 - t), t / (1 - t))) / t from a VE denoiser D (e.g. the exact
    ``GaussianMixture.denoiser``); t clamped to [1e-5, 1 - 1e-7], where both limits are finite."""
    t = as_time(t, z).clamp(T_LO, T_HI)
    tt = append_dims(t, z.ndim)
    return (z - denoiser(z / (1 - tt), t / (1 - t))) / tt


def exact_average_velocity(denoiser: Field, z: torch.Tensor, r: float, t: float, *, rtol: float = 1e-8,
                           atol: float = 1e-8) -> torch.Tensor:
    """u(z, r, t) = (z - z_r) / (t - r), z_r the flow ODE dz/ds = v(z, s) solved by dopri5 from t to r (MeanFlow
    Eq. 3); r = t gives v(z, t). Scalars 0 <= r <= t <= 1; use float64."""
    if not 0 <= r <= t <= 1:
        raise ValueError(f"need 0 <= r <= t <= 1, got r={r}, t={t}")
    if r == t:
        return exact_velocity(denoiser, z, t)
    from torchdiffeq import odeint

    times = torch.tensor([min(t, T_HI), max(r, T_LO)], dtype=z.dtype, device=z.device)
    z_r = odeint(lambda s, y: exact_velocity(denoiser, y, s), z, times, rtol=rtol, atol=atol, method="dopri5")[-1]
    return (z - z_r) / (t - r)
