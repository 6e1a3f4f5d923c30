"""Training objectives: the EDM denoising loss (teachers), CD (Algorithm 2), CT (Algorithm 3) and iCT.

Each loss is a small class called as ``loss(model, target_model, x0, k=step, generator=g)`` that returns the
per-sample loss (B,); the training loop averages it. Distances d are per-sample too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn

from cmlearn.core.parameterization import SIGMA_DATA, append_dims
from cmlearn.core.pfode import Field, euler_step, heun_step
from cmlearn.core.schedules import (
    EPS,
    RHO,
    T_MAX,
    ct_ema_decay,
    ct_num_steps,
    ict_num_steps,
    karras_sigmas,
    lognormal_index_weights,
)
from cmlearn.core.stable_target import batch_posterior_mean, stable_ve_point

# ---------------------------------------------------------------- distances d(x, y), per sample


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared l2, averaged over dimensions: ||x - y||^2 / dim; (B, ...) x (B, ...) -> (B,) (Sec. 5)."""
    return (x - y).flatten(1).pow(2).mean(1)


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """l1, averaged over dimensions; (B, ...) x (B, ...) -> (B,) (Sec. 5)."""
    return (x - y).flatten(1).abs().mean(1)


def pseudo_huber(x: torch.Tensor, y: torch.Tensor, *, c: float | None = None) -> torch.Tensor:
    """iCT's sqrt(||x - y||^2 + c^2) - c per sample (not per pixel), c = 0.00054 sqrt(dim); (B, ...) -> (B,)."""
    diff = (x - y).flatten(1)
    c = 0.00054 * math.sqrt(diff.shape[1]) if c is None else c
    return torch.sqrt(diff.pow(2).sum(1) + c**2) - c


DISTANCES = {"l2": l2, "l1": l1, "pseudo_huber": pseudo_huber}


def make_distance(name: str, *, huber_c: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A per-sample distance d (B, ...) x (B, ...) -> (B,) by name: l2, l1, pseudo_huber or lpips (Sec. 5).

    ``huber_c`` > 0 replaces pseudo-Huber's c = 0.00054 sqrt(dim) (a ValueError for any other distance)."""
    if huber_c < 0 or (huber_c > 0 and name != "pseudo_huber"):
        raise ValueError(f"huber_c={huber_c} needs huber_c >= 0 and is read by distance 'pseudo_huber' only, "
                         f"not {name!r}")
    if huber_c > 0:
        return functools.partial(pseudo_huber, c=huber_c)
    if name == "lpips":
        from cmlearn.core.perceptual import LPIPSDistance

        return LPIPSDistance()
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose one of {sorted(DISTANCES) + ['lpips']}")
    return DISTANCES[name]


def _paired(online: nn.Module, target: nn.Module, x1, t1, x2, t2):
    """f_theta(x1, t1) and stopgrad f_theta-(x2, t2) with the same dropout randomness (paper App. C)."""
    devices = [x1.device] if x1.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        out = online(x1, t1)
    with torch.no_grad():
        tgt = target(x2, t2)
    return out, tgt


# ---------------------------------------------------------------- losses


class EDMLoss:
    """EDM denoising loss: sigma = exp(P_mean + P_std n), weight (sigma^2 + sd^2) / (sigma sd)^2 (teachers).

    ``stable_target=True``: the target is the batch's posterior mean of x0 at x0 + sigma e (STF, Xu et al. 2023,
    Eq. 7; ``cmlearn.core.stable_target``) in place of x0, with ``reference`` points passed to the call joining
    the batch: the same target at small sigma, far less noise at large sigma, where one x0 is a poor estimate."""

    def __init__(self, *, p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = SIGMA_DATA,
                 stable_target: bool = False):
        self.p_mean, self.p_std, self.sigma_data = p_mean, p_std, sigma_data
        self.stable_target = bool(stable_target)

    def __call__(self, model: nn.Module, target: nn.Module | None, x0: torch.Tensor, *, k: int = 0,
                 generator: torch.Generator | None = None, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample weighted denoising loss (B,) of the denoiser ``model`` on clean x0 (B, ...); target unused.
        ``reference`` (M, ...): extra data points for the stable target's posterior mean (read only with it)."""
        n = x0.shape[0]
        rnd = torch.randn(n, generator=generator, dtype=x0.dtype).to(x0.device)
        sigma = torch.exp(self.p_mean + self.p_std * rnd)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        D = model(x0 + append_dims(sigma, x0.ndim) * noise, sigma)
        y = batch_posterior_mean(x0, noise, 1 / sigma, reference=reference) if self.stable_target else x0
        return weight * (D - y).flatten(1).pow(2).mean(1)


class ConsistencyLoss:
    """Shared by CD and CT: pick n, build (x_{t_{n+1}}, t_{n+1}) and (x_{t_n}, t_n), compare with d, weight lambda."""

    def __init__(self, *, distance: str = "l2", eps: float = EPS, T: float = T_MAX, rho: float = RHO,
                 weighting: str = "uniform", huber_c: float = 0.0):
        if weighting not in ("uniform", "ict"):
            raise ValueError(f"unknown weighting {weighting!r}; choose 'uniform' or 'ict'")
        self.d = make_distance(distance, huber_c=huber_c)
        self.eps, self.T, self.rho, self.weighting = eps, T, rho, weighting

    def num_steps(self, k: int) -> int:
        """N at training step k (the grid has N times)."""
        raise NotImplementedError

    def target_decay(self, k: int) -> float:
        """mu(k) for the target network theta-."""
        raise NotImplementedError

    def grid(self, k: int) -> torch.Tensor:
        """The ascending Karras grid (N,) at training step k (Sec. 5)."""
        return karras_sigmas(self.num_steps(k), eps=self.eps, T=self.T, rho=self.rho)

    def sample_index(self, ts: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """0-based i with t_n = ts[i], t_{n+1} = ts[i+1]: n ~ U{1, ..., N-1} (paper)."""
        return torch.randint(len(ts) - 1, (n,), generator=generator)

    def pair(self, x0: torch.Tensor, t_next: torch.Tensor, t_cur: torch.Tensor, generator: torch.Generator | None,
             reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_{t_{n+1}}, x_{t_n}), both shaped like x0 (B, ...): the online point and the target's point.
        ``reference`` (M, ...): extra data points for CT's stable target (unused by CD)."""
        raise NotImplementedError

    def draw(self, x0: torch.Tensor, *, k: int = 0, generator: torch.Generator | None = None,
             reference: torch.Tensor | None = None) -> tuple:
        """The random part of one loss evaluation, in the loss's order of draws: (x_{t_{n+1}}, t_{n+1}, x_{t_n},
        t_n, lambda(t_n)), points shaped like x0 (B, ...), times and weights (B,) (Alg. 2 and 3, lines 3-5)."""
        ts = self.grid(k)
        i = self.sample_index(ts, x0.shape[0], generator)
        t_cur = ts[i].to(device=x0.device, dtype=x0.dtype)
        t_next = ts[i + 1].to(device=x0.device, dtype=x0.dtype)
        x_next, x_cur = self.pair(x0, t_next, t_cur, generator, reference)
        lam = 1.0 / (t_next - t_cur) if self.weighting == "ict" else torch.ones_like(t_cur)
        return x_next, t_next, x_cur, t_cur, lam

    def __call__(self, model: nn.Module, target: nn.Module, x0: torch.Tensor, *, k: int = 0,
                 generator: torch.Generator | None = None, reference: torch.Tensor | None = None) -> torch.Tensor:
        """lambda(t_n) d(f_theta(x_{t_{n+1}}, t_{n+1}), f_theta-(x_{t_n}, t_n)) per sample (B,) (Alg. 2 and 3);
        ``reference``: extra data points for the stable target's posterior mean (CT / iCT with stable_target)."""
        x_next, t_next, x_cur, t_cur, lam = self.draw(x0, k=k, generator=generator, reference=reference)
        out, tgt = _paired(model, target, x_next, t_next, x_cur, t_cur)
        return lam * self.d(out, tgt)


class CDLoss(ConsistencyLoss):
    """Algorithm 2: x_{t_{n+1}} = x + t_{n+1} z; x_hat_{t_n} = one teacher ODE step (Euler or Heun) back to t_n."""

    def __init__(self, teacher: Field, *, N: int = 18, solver: str = "heun", mu: float = 0.0, **kw):
        super().__init__(**kw)
        if solver not in ("euler", "heun"):
            raise ValueError(f"unknown solver {solver!r}; choose 'euler' or 'heun'")
        karras_sigmas(N, eps=self.eps, T=self.T, rho=self.rho)  # validates N, eps, T
        self.teacher, self.N, self.mu = teacher, N, mu
        self.step = heun_step if solver == "heun" else euler_step

    def num_steps(self, k: int) -> int:
        return self.N

    def target_decay(self, k: int) -> float:
        return self.mu

    def pair(self, x0: torch.Tensor, t_next: torch.Tensor, t_cur: torch.Tensor, generator: torch.Generator | None,
             reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_next = x0 + append_dims(t_next, x0.ndim) * z
        with torch.no_grad():
            x_cur = self.step(x_next, t_next, t_cur, denoiser=self.teacher)
        return x_next, x_cur


class CTLoss(ConsistencyLoss):
    """Algorithm 3: the same z at both times, x + t_{n+1} z and x + t_n z; N(k), mu(k) curriculum (App. C).

    ``N`` fixes the number of steps (and ``mu`` the target decay) instead of the curriculum. ``stable_target=True``
    (not in the paper) takes the target's point one Euler step of the batch's score estimate back, x + t_n z -
    (1 - t_n / t_{n+1}) (x - xbar), xbar the batch's posterior mean of x at x + t_{n+1} z
    (``cmlearn.core.stable_target.stable_ve_point``): the same point where the own x dominates the batch (small
    t), far less noise where it does not; ``reference`` points passed to the call join the batch in that mean.
    """

    def __init__(self, *, K: int, s0: int = 2, s1: int = 150, mu0: float = 0.9, official_mu: bool = False,
                 N: int | None = None, mu: float | None = None, stable_target: bool = False, **kw):
        super().__init__(**kw)
        self.stable_target = bool(stable_target)
        if K <= 0:
            raise ValueError(f"K must be > 0, got K={K}")
        if N is not None:
            karras_sigmas(N, eps=self.eps, T=self.T, rho=self.rho)
        self.K, self.s0, self.s1, self.mu0, self.official_mu, self.N, self.mu = K, s0, s1, mu0, official_mu, N, mu

    def num_steps(self, k: int) -> int:
        return self.N if self.N is not None else ct_num_steps(k, K=self.K, s0=self.s0, s1=self.s1)

    def target_decay(self, k: int) -> float:
        if self.mu is not None:
            return self.mu
        return ct_ema_decay(k, K=self.K, s0=self.s0, s1=self.s1, mu0=self.mu0, official=self.official_mu)

    def pair(self, x0: torch.Tensor, t_next: torch.Tensor, t_cur: torch.Tensor, generator: torch.Generator | None,
             reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_next = x0 + append_dims(t_next, x0.ndim) * z
        if self.stable_target:
            return x_next, stable_ve_point(x0, z, t_next, t_cur, reference=reference)
        return x_next, x0 + append_dims(t_cur, x0.ndim) * z


class ICTLoss(CTLoss):
    """Improved CT (Song & Dhariwal 2023): mu = 0, pseudo-Huber, lambda = 1/(t_{n+1} - t_n), lognormal n, exp. N(k)."""

    def __init__(self, *, K: int, s0: int = 10, s1: int = 1280, p_mean: float = -1.1, p_std: float = 2.0,
                 distance: str = "pseudo_huber", **kw):
        kw.setdefault("weighting", "ict")
        super().__init__(K=K, s0=s0, s1=s1, distance=distance, mu=0.0, **kw)
        self.p_mean, self.p_std = p_mean, p_std

    def num_steps(self, k: int) -> int:
        return self.N if self.N is not None else ict_num_steps(k, K=self.K, s0=self.s0, s1=self.s1)

    def sample_index(self, ts: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
        w = lognormal_index_weights(ts, p_mean=self.p_mean, p_std=self.p_std)
        return torch.multinomial(w, n, replacement=True, generator=generator)
