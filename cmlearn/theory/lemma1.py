"""Lemma 1, checked: the score is a posterior average, grad log p_t(x_t) = -E[(x_t - x)/t^2 | x_t] (App. A.3).

For x ~ p_data and x_t = x + t z, the Monte Carlo estimator s_M(x_t) = -mean_i (x_t - x_i) / t^2 over M
posterior samples x_i ~ p(x | x_t) is unbiased, and its error falls like M^{-1/2}:
E||s_M - s||^2 = tr Cov[x | x_t] / (M t^4). Tweedie's formula links both ends: D(x_t, t) = E[x | x_t] =
x_t + t^2 s(x_t, t) (first order) and Cov[x | x_t] = t^2 dD/dx_t (second order), so the single-sample variance
is known in closed form for a mixture. With M = 1 and x_i the clean sample that made x_t, the estimator is
-z/t: denoising score matching's regression target, and (Sec. 5) why consistency training needs no teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cmlearn.core.distributions import Distribution, GaussianMixture
from cmlearn.core.parameterization import as_time
from cmlearn.theory.orders import fit_order


def _check_sizes(**sizes: int) -> None:
    for name, v in sizes.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {name}={v!r}")


def noisy_points(dist: Distribution, n: int, t: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points x_t = x + t z of p_t (x ~ p_data, z ~ N(0, I)) for Lemma 1's checks; (n, d) float64."""
    _check_sizes(n=n)
    if not t > 0:
        raise ValueError(f"t must be > 0, got t={t}")
    x = dist.sample(n, generator=generator)
    return x + t * torch.randn(x.shape, dtype=x.dtype, generator=generator)


def posterior_samples(dist: GaussianMixture, x_t: torch.Tensor, t: float | torch.Tensor, M: int, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """M samples x_i ~ p(x | x_t) (Lemma 1's posterior) for every row of x_t (B, d): shape (M, B, d)."""
    _check_sizes(M=M)
    t = as_time(t, x_t)
    xs = dist.posterior_sample(x_t.repeat(M, 1), t.repeat(M), generator=generator)
    return xs.reshape(M, *x_t.shape)


def mc_score(dist: GaussianMixture, x_t: torch.Tensor, t: float | torch.Tensor, M: int, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Lemma 1's estimator s_M(x_t) = -(1/M) sum_i (x_t - x_i) / t^2, x_i ~ p(x | x_t); shape (B, d)."""
    t = as_time(t, x_t)
    xs = posterior_samples(dist, x_t, t, M, generator=generator)
    return -(x_t[None] - xs).mean(0) / (t**2)[:, None]


def posterior_trace_cov(dist: Distribution, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """tr Cov[x | x_t] = t^2 tr dD(x_t, t)/dx_t (second-order Tweedie, Lemma 1's variance); (B, d) -> (B,).

    By autograd through the exact denoiser.
    """
    t = as_time(t, x_t)
    x = x_t.detach().clone().requires_grad_(True)
    D = dist.denoiser(x, t)
    tr = torch.zeros(len(x), dtype=x.dtype)
    for j in range(x.shape[1]):  # rows are independent, so one backward pass per dimension gives dD_j/dx_j
        (g,) = torch.autograd.grad(D[:, j].sum(), x, retain_graph=j < x.shape[1] - 1)
        tr += g[:, j]
    return (t**2 * tr).detach()


def score_error_vs_M(dist: GaussianMixture, *, t: float, Ms: Sequence[int] = (1, 4, 16, 64, 256, 1024),
                     n: int = 1000, seed: int = 0) -> dict:
    """Lemma 1: RMS error of s_M against the exact score at n points x_t ~ p_t, for each M (lists of len(Ms)).

    Also the predicted RMS error sqrt(mean tr Cov[x | x_t] / M) / t^2 and the fitted slope of log RMS error
    against log M (Lemma 1: -1/2).
    """
    Ms = [int(M) for M in Ms]
    if len(Ms) < 2:
        raise ValueError(f"need at least two values of M, got Ms={Ms}")
    gen = torch.Generator().manual_seed(seed)
    x_t = noisy_points(dist, n, t, generator=gen)
    exact = dist.score(x_t, t)
    rmse = [float((mc_score(dist, x_t, t, M, generator=gen) - exact).pow(2).sum(1).mean().sqrt()) for M in Ms]
    var1 = float(posterior_trace_cov(dist, x_t, t).mean()) / t**4
    predicted = [(var1 / M) ** 0.5 for M in Ms]
    return {"t": t, "Ms": Ms, "rmse": rmse, "predicted": predicted, "slope": -fit_order(Ms, rmse),
            "single_sample_var": var1}


def single_sample_variance(dist: GaussianMixture, ts: Sequence[float], *, n: int = 2000, M: int = 64,
                           seed: int = 0) -> dict:
    """Lemma 1 at each t: the variance E||s_1 - s||^2 of the one-sample estimator -(x_t - x)/t^2 (lists of len(ts)).

    Measured with M posterior samples per point and predicted by tr Cov[x | x_t] / t^4, next to the signal
    E||s||^2 and their ratio (``relative``).
    """
    _check_sizes(n=n, M=M)
    if M < 2:
        raise ValueError(f"M must be >= 2 to measure a variance, got M={M}")
    gen = torch.Generator().manual_seed(seed)
    out: dict = {"ts": [float(t) for t in ts], "measured": [], "predicted": [], "signal": [], "relative": []}
    for t in out["ts"]:
        x_t = noisy_points(dist, n, t, generator=gen)
        xs = posterior_samples(dist, x_t, t, M, generator=gen)
        s1 = -(x_t[None] - xs) / t**2  # M one-sample estimates per point
        measured = float(s1.var(0, unbiased=True).sum(1).mean())  # E_x tr Var[s_1 | x_t]
        predicted = float(posterior_trace_cov(dist, x_t, t).mean()) / t**4
        signal = float(dist.score(x_t, t).pow(2).sum(1).mean())
        for key, v in (("measured", measured), ("predicted", predicted), ("signal", signal),
                       ("relative", predicted / signal)):
            out[key].append(v)
    return out
