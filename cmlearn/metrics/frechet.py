"""Frechet distance between Gaussians fitted to features (the formula behind FID, Heusel et al. 2017).

d^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}). The trace of the matrix square root is computed from
the eigenvalues of the symmetric PSD matrix S1^{1/2} S2 S1^{1/2}, which has the same spectrum as S1 S2: no
complex parts to discard and no failure for singular covariances (fewer samples than feature dimensions).
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as64(a: ArrayLike, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) in float64 of (n, d) features, n >= 2."""
    f = _as64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (n, d) with n >= 2, got {f.shape}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Frechet (2-Wasserstein) distance of N(mu1, sigma1) and N(mu2, sigma2), as FID reports it."""
    mu1, mu2 = _as64(mu1, "mu1"), _as64(mu2, "mu2")
    sigma1, sigma2 = _as64(sigma1, "sigma1"), _as64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must be vectors of equal length, got shapes {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {s.shape}")
    r1 = _sqrt_psd(sigma1)
    m = r1 @ sigma2 @ r1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt, 0.0))


def frechet_distance_from_features(f1: ArrayLike, f2: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) feature sets with the same d."""
    f1, f2 = _as64(f1, "f1"), _as64(f2, "f2")
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (n, d) with the same d, got shapes {f1.shape} and {f2.shape}")
    return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
