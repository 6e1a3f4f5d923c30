"""Quantitative zero-shot editing on 2D toys: "inpainting" one coordinate of a Gaussian mixture given the others.

For a mixture sum_k w_k N(mu_k, S_k), the conditional of the unknown coordinates u given the known ones k is again a
mixture: component weights w_k N(x_k; mu_k[k], S_k[k, k]) (renormalized), means mu_k[u] + S_k[u, k] S_k[k, k]^-1
(x_k - mu_k[k]) and covariances S_k[u, u] - S_k[u, k] S_k[k, k]^-1 S_k[k, u]. So Algorithm 4's samples (with Omega = 1
on the unknown coordinates) can be compared with exact conditional samples, per conditioning value.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.editing import inpaint
from cmlearn.core.sampling import default_taus

__all__ = ["conditional_sample", "editing_distance", "edit_conditional", "plot_conditionals", "wasserstein_1d"]


def _known_mask(dist: GaussianMixture, known: int | Sequence[int]) -> torch.Tensor:
    idx = [known] if isinstance(known, int) else list(known)
    if not idx or any(not 0 <= i < dist.dim for i in idx) or len(set(idx)) != len(idx) or len(idx) >= dist.dim:
        raise ValueError(f"known must name distinct coordinates among 0..{dist.dim - 1}, leaving at least one "
                         f"unknown; got {known!r}")
    m = torch.zeros(dist.dim, dtype=torch.bool)
    m[idx] = True
    return m


def conditional_sample(dist: GaussianMixture, values: torch.Tensor, *, known: int | Sequence[int] = 0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One exact sample of p(x | x[known] = values[i]) per row; returns full points (B, d) with x[known] = values.

    ``values``: (B,) for one known coordinate, or (B, len(known)).
    """
    kn = _known_mask(dist, known)
    un = ~kn
    v = torch.as_tensor(values, dtype=torch.float64)
    v = v[:, None] if v.ndim == 1 else v
    if v.ndim != 2 or v.shape[1] != int(kn.sum()):
        raise ValueError(f"values must have shape (B,) or (B, {int(kn.sum())}), got {tuple(v.shape)}")
    mu, S = dist.means, dist.covs
    mk, mu_u = mu[:, kn], mu[:, un]  # (K, a), (K, b)
    Skk = S[:, kn][:, :, kn]
    Suk = S[:, un][:, :, kn]
    Suu = S[:, un][:, :, un]
    diff = v[:, None, :] - mk[None]  # (B, K, a)
    sol = torch.linalg.solve(Skk[None].expand(len(v), -1, -1, -1), diff[..., None])[..., 0]  # Skk^-1 diff
    logdet = torch.logdet(Skk)
    logw = dist.weights.log()[None] - 0.5 * (diff * sol).sum(-1) - 0.5 * logdet[None]  # (B, K)
    k = torch.multinomial(torch.softmax(logw, 1), 1, generator=generator)[:, 0]
    cmean = mu_u[k] + (Suk[k] @ sol[torch.arange(len(v)), k][..., None])[..., 0]
    ccov = Suu - Suk @ torch.linalg.solve(Skk, Suk.transpose(1, 2))
    chol = torch.linalg.cholesky(ccov)[k]
    z = torch.randn(len(v), int(un.sum()), 1, dtype=torch.float64, generator=generator)
    out = torch.empty(len(v), dist.dim, dtype=torch.float64)
    out[:, kn] = v
    out[:, un] = cmean + (chol @ z)[..., 0]
    return out


def edit_conditional(model: nn.Module, values: torch.Tensor, taus: Sequence[float], *, dim: int = 2,
                     known: int | Sequence[int] = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Algorithm 4 samples of p(x | x[known] = values): inpainting with Omega = 1 on the unknown coordinates."""
    idx = [known] if isinstance(known, int) else list(known)
    v = torch.as_tensor(values, dtype=torch.float32)
    v = v[:, None] if v.ndim == 1 else v
    y = torch.zeros(len(v), dim)
    y[:, idx] = v
    omega = torch.ones(dim)
    omega[idx] = 0.0
    return inpaint(model, y, omega, taus, generator=generator).double()


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> float:
    """W1 between two equal-size 1D samples: the mean gap of their sorted values."""
    a, b = torch.as_tensor(a).flatten().double(), torch.as_tensor(b).flatten().double()
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"need two non-empty samples of equal size, got {len(a)} and {len(b)}")
    return float((a.sort().values - b.sort().values).abs().mean())


def editing_distance(model: nn.Module, dist: GaussianMixture, *, steps: Sequence[int] = (1, 2, 4, 8),
                     n_conditions: int = 16, n_per: int = 1000, known: int = 0, seed: int = 0,
                     taus: dict[int, Sequence[float]] | None = None, eps: float = 0.002, T: float = 80.0) -> dict:
    """Mean W1 (over conditioning values drawn from the data) between zero-shot and exact conditional samples of
    the other coordinate, for each number of editing steps (evenly spaced ``default_taus`` unless ``taus`` given).

    Returns {"steps": [...], "distance": [...], "floor": W1 between two independent exact samples, "conditions": ...}.
    """
    if dist.dim != 2:
        raise ValueError(f"editing_distance is for 2D mixtures, got dim {dist.dim}")
    gen = torch.Generator().manual_seed(seed)
    cond = dist.sample(n_conditions, generator=gen)[:, known]
    values = cond.repeat_interleave(n_per)
    other = 1 - known
    exact = conditional_sample(dist, values, known=known, generator=gen)[:, other].view(n_conditions, n_per)
    exact2 = conditional_sample(dist, values, known=known, generator=gen)[:, other].view(n_conditions, n_per)
    floor = sum(wasserstein_1d(exact[i], exact2[i]) for i in range(n_conditions)) / n_conditions
    res = {"steps": [int(s) for s in steps], "distance": [], "floor": floor, "conditions": cond}
    for s in steps:
        ts = taus[s] if taus is not None and s in taus else default_taus(int(s), eps=eps, T=T)
        g = torch.Generator().manual_seed(seed + 1)
        x = edit_conditional(model, values, ts, known=known, generator=g)[:, other].view(n_conditions, n_per)
        res["distance"].append(sum(wasserstein_1d(x[i], exact[i]) for i in range(n_conditions)) / n_conditions)
    return res


def plot_conditionals(model: nn.Module, dist: GaussianMixture, values: Sequence[float], *, steps: int = 4,
                      n_per: int = 2000, known: int = 0, seed: int = 0, ax=None):
    """Histograms of the unknown coordinate: zero-shot (Algorithm 4, ``steps`` calls) against the exact conditional."""
    values = [float(v) for v in values]
    if ax is None:
        _, ax = plt.subplots(1, len(values), figsize=(3.2 * len(values), 2.8), squeeze=False)
        ax = ax[0]
    gen = torch.Generator().manual_seed(seed)
    other = 1 - known
    for a, v in zip(ax, values):
        vals = torch.full((n_per,), v, dtype=torch.float64)
        ex = conditional_sample(dist, vals, known=known, generator=gen)[:, other]
        cm = edit_conditional(model, vals, default_taus(steps), known=known, generator=gen)[:, other]
        bins = torch.linspace(float(min(ex.min(), cm.min())), float(max(ex.max(), cm.max())), 50).numpy()
        a.hist(ex.numpy(), bins=bins, alpha=0.5, density=True, label="exact", color="0.5")
        a.hist(cm.numpy(), bins=bins, alpha=0.5, density=True, label=f"Alg. 4, {steps} steps", color="C3")
        a.set(title=f"x{known} = {v:.2f}", xlabel=f"x{other}")
    ax[0].legend(fontsize=8)
    return ax
