"""Distributions with an exact score: Gaussian mixtures and finite point sets (the 2D toys of the course).

Under the VE/EDM forward process x_t = x_0 + t z, a mixture sum_k w_k N(mu_k, S_k) stays a mixture,
p_t = sum_k w_k N(mu_k, S_k + t^2 I), so its score, denoiser E[x_0 | x_t] (Tweedie: D = x + t^2 grad log p_t),
posterior p(x_0 | x_t) and conditionals given some coordinates are all in closed form (mixtures again).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from cmlearn.core.parameterization import SIGMA_DATA, as_time


@runtime_checkable
class Distribution(Protocol):
    """A data distribution p_data with exact p_t = p_data * N(0, t^2 I): what the theory checks need (Sec. 2-5)."""

    @property
    def dim(self) -> int:
        """The dimension d."""

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n i.i.d. samples of p_data; (n, d)."""

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x) (Eq. 3); (B, d) -> (B, d)."""

    def denoiser(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """E[x_0 | x_t = x] = x + t^2 score(x, t) (Tweedie); (B, d) -> (B, d)."""

    def log_prob(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """log p_t(x); (B, d) -> (B,)."""


def _psd_root(c: torch.Tensor) -> torch.Tensor:
    """Symmetric square root R (R R^T = c) of positive semi-definite matrices (..., d, d), singular ones included."""
    evals, evecs = torch.linalg.eigh(0.5 * (c + c.transpose(-1, -2)))
    return evecs * evals.clamp_min(0).sqrt()[..., None, :]


@dataclass(frozen=True)
class MixtureRows:
    """One Gaussian mixture per row b: sum_k exp(log_weights[b, k]) N(means[b, k], covs[b, k]).

    Shapes: log_weights (B, K), normalised (logsumexp over k is 0); means (B, K, d); covs (B, K, d, d), often an
    expanded view of one (K, d, d) set shared by every row.
    """

    log_weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor

    def mean(self) -> torch.Tensor:
        """The mean sum_k w_k m_k of each row's mixture; (B, d)."""
        return (self.log_weights.exp()[..., None] * self.means).sum(1)

    def roots(self) -> torch.Tensor:
        """Symmetric square roots of the covariances (eigh; singular ones allowed); (B, K, d, d)."""
        return _psd_root(self.covs)

    def sample(self, *, generator: torch.Generator | None = None, root: str = "eigh") -> torch.Tensor:
        """One draw per row (B, d): a component by weight, then its Gaussian; ``root`` "eigh" or "cholesky" (PD)."""
        if root not in ("eigh", "cholesky"):
            raise ValueError(f"root must be 'eigh' or 'cholesky', got {root!r}")
        k = torch.multinomial(torch.softmax(self.log_weights, 1), 1, generator=generator)[:, 0]
        rows = torch.arange(len(k), device=k.device)
        mean, cov = self.means[rows, k], self.covs[rows, k]
        R = _psd_root(cov) if root == "eigh" else torch.linalg.cholesky(cov)
        z = torch.randn(mean.shape + (1,), dtype=mean.dtype, generator=generator).to(mean.device)
        return mean + (R @ z)[..., 0]


class GaussianMixture:
    """sum_k w_k N(mu_k, S_k) in any dimension, with full covariances; isotropic components take a fast path."""

    def __init__(self, means: torch.Tensor, covs: torch.Tensor, weights: torch.Tensor | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        if covs.shape == (K,):  # isotropic variances
            covs = covs[:, None, None] * torch.eye(d, dtype=torch.float64)
        if covs.shape != (K, d, d):
            raise ValueError(f"covs must have shape ({K}, {d}, {d}) or ({K},), got {tuple(covs.shape)}")
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape ({K},), got {tuple(weights.shape)}")
        if (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must be non-negative and sum to 1, got sum={float(weights.sum()):.8g}")
        if not torch.allclose(covs, covs.transpose(-1, -2), atol=1e-12):
            raise ValueError("covs must be symmetric")
        eig_min = torch.linalg.eigvalsh(covs).min(dim=-1).values
        if (eig_min <= 0).any():
            k = int(torch.nonzero(eig_min <= 0)[0])
            raise ValueError(f"covs[{k}] is not positive definite (smallest eigenvalue {float(eig_min[k]):.3g})")
        self.means, self.covs, self.weights = means, covs, weights
        eye = torch.eye(d, dtype=torch.float64)
        iso = covs[:, 0, 0]
        self._iso = iso if torch.allclose(covs, iso[:, None, None] * eye, rtol=0, atol=1e-15) else None
        self._chol = torch.linalg.cholesky(covs)

    @property
    def dim(self) -> int:
        """The dimension d."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """The number of components K."""
        return self.means.shape[0]

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")

    def _terms(self, x: torch.Tensor, t: float | torch.Tensor):
        """Per-component log N(x; mu_k, S_k + t^2 I) (B, K) and alpha_k = (S_k + t^2 I)^-1 (x - mu_k) (B, K, d)."""
        self._check(x)
        t = as_time(t, x)
        mu, d = self.means.to(x), self.dim
        diff = x[:, None, :] - mu[None]
        t2 = (t**2)[:, None]
        if self._iso is not None:
            var = self._iso.to(x)[None] + t2  # (B, K)
            alpha = diff / var[..., None]
            logn = -0.5 * (diff * alpha).sum(-1) - 0.5 * d * torch.log(2 * math.pi * var)
        else:
            eye = torch.eye(d, dtype=x.dtype, device=x.device)
            cov_t = self.covs.to(x)[None] + t2[..., None, None] * eye
            L = torch.linalg.cholesky(cov_t)
            alpha = torch.cholesky_solve(diff[..., None], L)[..., 0]
            logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
            logn = -0.5 * (diff * alpha).sum(-1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)
        return logn, alpha

    def _responsibilities(self, x: torch.Tensor, t: float | torch.Tensor):
        logn, alpha = self._terms(x, t)
        logits = torch.log(self.weights.to(x))[None] + logn
        return logits, alpha

    def log_prob(self, x: torch.Tensor, t: float | torch.Tensor = 0.0) -> torch.Tensor:
        """log p_t(x) for p_t = p_data * N(0, t^2 I); (B, d) -> (B,)."""
        logits, _ = self._responsibilities(x, t)
        return torch.logsumexp(logits, dim=1)

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x) = -sum_k r_k(x) (S_k + t^2 I)^-1 (x - mu_k) (the PF ODE's score, Eq. 3); (B, d)."""
        logits, alpha = self._responsibilities(x, t)
        r = torch.softmax(logits, dim=1)
        return -(r[..., None] * alpha).sum(1)

    def denoiser(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """E[x_0 | x_t = x] = x + t^2 score(x, t) (Tweedie, Lemma 1); (B, d)."""
        t = as_time(t, x)
        return x + (t**2)[:, None] * self.score(x, t)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n i.i.d. samples of p_data; (n, d) float64."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, 1, dtype=torch.float64, generator=generator)
        return self.means[k] + (self._chol[k] @ z)[..., 0]

    def posterior(self, x: torch.Tensor, t: float | torch.Tensor) -> MixtureRows:
        """p(x_0 | x_t = x) per row (Lemma 1, Tweedie): a mixture, (B, K) weights, (B, K, d) means, (B, K, d, d) covs.

        Weights r_k(x) (responsibilities), means mu_k + S_k C_k^-1 (x - mu_k) = x - t^2 C_k^-1 (x - mu_k) and
        covariances S_k - S_k C_k^-1 S_k = t^2 S_k C_k^-1, with C_k = S_k + t^2 I; its mean is the denoiser.
        """
        t = as_time(t, x)
        logits, alpha = self._responsibilities(x, t)
        means = x[:, None, :] - (t**2)[:, None, None] * alpha
        shared = len(t) > 0 and bool((t == t[0]).all())  # one covariance set when every row has the same t
        tc = t[:1] if shared else t
        S = self.covs.to(x)[None]
        cov_t = S + (tc**2)[:, None, None, None] * torch.eye(self.dim, dtype=x.dtype, device=x.device)
        covs = S - S @ torch.linalg.solve(cov_t, S.expand_as(cov_t))
        return MixtureRows(torch.log_softmax(logits, 1), means, covs.expand(len(x), -1, -1, -1))

    def posterior_sample(
        self, x: torch.Tensor, t: float | torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One sample of x_0 ~ p(x_0 | x_t = x) per row (B, d): a component by responsibility, then its Gaussian."""
        return self.posterior(x, t).sample(generator=generator)

    def split(self, known: int | Sequence[int]) -> tuple[list[int], list[int]]:
        """(known, free) coordinate indices: ``known`` as given, the free ones the others in increasing order."""
        idx = [known] if isinstance(known, int) else [int(i) for i in known]
        if not idx or any(not 0 <= i < self.dim for i in idx) or len(set(idx)) != len(idx) or len(idx) >= self.dim:
            raise ValueError(f"known must name distinct coordinates among 0..{self.dim - 1}, leaving at least one "
                             f"unknown; got {known!r}")
        return idx, [i for i in range(self.dim) if i not in idx]

    def condition(self, known: int | Sequence[int], values: torch.Tensor) -> MixtureRows:
        """p(x[free] | x[known] = values) per row (Algorithm 4's exact target); values (B,) or (B, a) -> (B, K, b).

        Component weights w_k N(v; mu_k[a], S_k[a, a]) (renormalised), means mu_k[b] + S_k[b, a] S_k[a, a]^-1
        (v - mu_k[a]), covariances S_k[b, b] - S_k[b, a] S_k[a, a]^-1 S_k[a, b] (shared by the rows), for the
        known coordinates a (columns of ``values`` in the order of ``known``) and free ones b (see ``split``).
        """
        kn, fr = self.split(known)
        v = torch.as_tensor(values, dtype=torch.float64)
        v = v[:, None] if v.ndim == 1 else v
        if v.ndim != 2 or v.shape[1] != len(kn):
            raise ValueError(f"values must have shape (B,) or (B, {len(kn)}), got {tuple(v.shape)}")
        S = self.covs
        Skk, Sfk, Sff = S[:, kn][:, :, kn], S[:, fr][:, :, kn], S[:, fr][:, :, fr]
        diff = v[:, None, :] - self.means[:, kn][None]  # (B, K, a)
        sol = torch.linalg.solve(Skk[None].expand(len(v), -1, -1, -1), diff[..., None])[..., 0]  # Skk^-1 diff
        logw = self.weights.log()[None] - 0.5 * (diff * sol).sum(-1) - 0.5 * torch.logdet(Skk)[None]
        means = self.means[:, fr][None] + (Sfk[None] @ sol[..., None])[..., 0]
        covs = Sff - Sfk @ torch.linalg.solve(Skk, Sfk.transpose(1, 2))
        return MixtureRows(torch.log_softmax(logw, 1), means, covs.expand(len(v), -1, -1, -1))

    def mean_and_std(self) -> tuple[torch.Tensor, float]:
        """Overall mean (d,) and RMS standard deviation sqrt(trace(Cov)/d) of p_data."""
        w = self.weights
        m = (w[:, None] * self.means).sum(0)
        second = (w[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        cov = second - m[:, None] * m[None]
        return m, float(torch.sqrt(torch.trace(cov) / self.dim))

    def rescaled(self, std: float = SIGMA_DATA) -> GaussianMixture:
        """The same shape, centred and scaled so that sqrt(trace(Cov)/d) = std (sigma_data, App. C)."""
        m, s = self.mean_and_std()
        a = std / s
        return GaussianMixture(a * (self.means - m), a**2 * self.covs, self.weights)


class EmpiricalDistribution:
    """The uniform distribution on a finite point set; p_t = mean_i N(x_i, t^2 I) has an exact score for t > 0."""

    def __init__(self, points: torch.Tensor, *, chunk: int = 4_000_000):
        points = torch.as_tensor(points, dtype=torch.float64)
        if points.ndim != 2 or len(points) < 1:
            raise ValueError(f"points must have shape (n, d) with n >= 1, got {tuple(points.shape)}")
        if not torch.isfinite(points).all():
            raise ValueError("points contain NaN or Inf")
        self.points, self._chunk = points, chunk

    @property
    def dim(self) -> int:
        """The dimension d."""
        return self.points.shape[1]

    def _logits(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p = self.points.to(x)
        sq = (x * x).sum(1, keepdim=True) - 2 * x @ p.T + (p * p).sum(1)[None]
        return -sq.clamp_min(0) / (2 * (t**2)[:, None])

    def _map(self, x, t, fn):
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        t = as_time(t, x)
        if (t <= 0).any():
            raise ValueError("EmpiricalDistribution needs t > 0 (its density at t = 0 is a sum of deltas)")
        step = max(1, self._chunk // len(self.points))
        return torch.cat([fn(x[i : i + step], t[i : i + step]) for i in range(0, len(x), step)])

    def denoiser(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """E[x_0 | x_t = x] = sum_i softmax_i(-|x - x_i|^2 / 2t^2) x_i."""
        return self._map(x, t, lambda xb, tb: torch.softmax(self._logits(xb, tb), 1) @ self.points.to(xb))

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """(D(x, t) - x) / t^2."""
        t = as_time(t, x)
        return (self.denoiser(x, t) - x) / (t**2)[:, None]

    def log_prob(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """log p_t(x) = logsumexp_i(-|x - x_i|^2 / 2t^2) - log n - d/2 log(2 pi t^2)."""
        n, d = len(self.points), self.dim

        def fn(xb, tb):
            return torch.logsumexp(self._logits(xb, tb), 1) - math.log(n) - 0.5 * d * torch.log(2 * math.pi * tb**2)

        return self._map(x, t, fn)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points drawn uniformly (with replacement) from the set; (n, d)."""
        idx = torch.randint(len(self.points), (n,), generator=generator)
        return self.points[idx]
