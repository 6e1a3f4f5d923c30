"""Distributions with an exact score: Gaussian mixtures and finite point sets (the 2D toys of the course).

Under the VE/EDM forward process x_t = x_0 + t z, a mixture sum_k w_k N(mu_k, S_k) stays a mixture,
p_t = sum_k w_k N(mu_k, S_k + t^2 I), so its score, denoiser E[x_0 | x_t] (Tweedie: D = x + t^2 grad log p_t)
and posterior p(x_0 | x_t) are all in closed form.
"""

from __future__ import annotations

import math

import torch

from cmlearn.core.parameterization import as_time


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
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
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

    def _responsibilities(self, x, t):
        logn, alpha = self._terms(x, t)
        logits = torch.log(self.weights.to(x))[None] + logn
        return logits, alpha

    def log_prob(self, x: torch.Tensor, t: float | torch.Tensor = 0.0) -> torch.Tensor:
        """log p_t(x) for p_t = p_data * N(0, t^2 I); (B,)."""
        logits, _ = self._responsibilities(x, t)
        return torch.logsumexp(logits, dim=1)

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x) = -sum_k r_k(x) (S_k + t^2 I)^-1 (x - mu_k); (B, d)."""
        logits, alpha = self._responsibilities(x, t)
        r = torch.softmax(logits, dim=1)
        return -(r[..., None] * alpha).sum(1)

    def denoiser(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """E[x_0 | x_t = x] = x + t^2 score(x, t) (Tweedie)."""
        t = as_time(t, x)
        return x + (t**2)[:, None] * self.score(x, t)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n i.i.d. samples of p_data (float64)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, 1, dtype=torch.float64, generator=generator)
        return self.means[k] + (self._chol[k] @ z)[..., 0]

    def posterior_sample(
        self, x: torch.Tensor, t: float | torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One sample of x_0 ~ p(x_0 | x_t = x) per row: component by responsibility, then its Gaussian posterior."""
        t = as_time(t, x)
        logits, alpha = self._responsibilities(x, t)
        k = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator)[:, 0]
        t2 = (t**2)[:, None]
        mean = x - t2 * alpha[torch.arange(len(x)), k]  # mu_k + S_k (S_k + t^2)^-1 (x - mu_k)
        S = self.covs.to(x)[k]
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        cov_t = S + t2[..., None] * eye
        post = S - S @ torch.linalg.solve(cov_t, S)  # = t^2 S (S + t^2 I)^-1
        evals, evecs = torch.linalg.eigh(0.5 * (post + post.transpose(-1, -2)))
        root = evecs * evals.clamp_min(0).sqrt()[:, None, :]
        z = torch.randn(x.shape + (1,), dtype=x.dtype, generator=generator).to(x.device)
        return mean + (root @ z)[..., 0]

    def mean_and_std(self) -> tuple[torch.Tensor, float]:
        """Overall mean and RMS standard deviation sqrt(trace(Cov)/d) of p_data."""
        w = self.weights
        m = (w[:, None] * self.means).sum(0)
        second = (w[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        cov = second - m[:, None] * m[None]
        return m, float(torch.sqrt(torch.trace(cov) / self.dim))

    def rescaled(self, std: float = 0.5) -> GaussianMixture:
        """The same shape, centred and scaled so that sqrt(trace(Cov)/d) = std."""
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
        idx = torch.randint(len(self.points), (n,), generator=generator)
        return self.points[idx]
