"""Figures of the course. Every function returns a matplotlib Figure (or draws into ``ax``) and never shows it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from cmlearn.theory.orders import fit_order


def _ax(ax, figsize=(4.5, 4.5)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def plot_points(samples, *, ax=None, title: str | None = None, lim: float = 1.6, color: str = "C0", s: float = 2.0,
                alpha: float = 0.5):
    """A scatter plot of 2D samples."""
    fig, ax = _ax(ax)
    x = _np(samples)
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, color=color, linewidths=0)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    if title:
        ax.set_title(title)
    return fig


def plot_density(dist, *, t: float = 0.0, ax=None, lim: float = 1.6, res: int = 150, title: str | None = None):
    """log p_t on a grid (image), for a distribution with ``log_prob(x, t)``."""
    fig, ax = _ax(ax)
    g = torch.linspace(-lim, lim, res, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    lp = dist.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1), t).reshape(res, res)
    ax.imshow(_np(lp).clip(min=float(lp.max()) - 12), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma")
    ax.set_title(title or f"log p_t, t = {t:g}")
    return fig


def plot_trajectories(traj, *, ax=None, n_show: int = 60, lim: float = 1.6, title: str | None = None):
    """PF ODE trajectories (S, B, 2) from ``solve(..., return_trajectory=True)``: paths, start (x) and end (dot).

    Times near T are far outside the data range; the view is clipped to the data region, where the paths bend.
    """
    fig, ax = _ax(ax)
    tr = _np(traj)
    k = min(n_show, tr.shape[1])
    for i in range(k):
        ax.plot(tr[:, i, 0], tr[:, i, 1], lw=0.6, color="0.6", alpha=0.7)
    ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=3, color="C3", zorder=3, label="end (t = eps)")
    start = np.clip(tr[0, :k], -lim, lim)
    ax.scatter(start[:, 0], start[:, 1], s=8, marker="x", color="C0", zorder=3, label="start (clipped to view)")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title or "PF ODE trajectories")
    ax.legend(loc="upper right", fontsize=7)
    return fig


def plot_consistency_along_trajectory(ts, f_values, *, ax=None, title: str | None = None):
    """f(x_t, t) along trajectories: ``f_values`` (S, B, 2) at times ``ts`` (S,); flat lines = self-consistency."""
    fig, ax = (plt.subplots(1, 2, figsize=(9, 3.5)) if ax is None else (ax[0].figure, ax))
    t, f = _np(ts), _np(f_values)
    for j in range(f.shape[1]):
        for d, a in enumerate(ax):
            a.plot(t, f[:, j, d], marker=".", ms=3, lw=1, color=f"C{j % 10}")
    for d, a in enumerate(ax):
        a.set(xscale="log", xlabel="t", ylabel=f"f(x_t, t)[{d}]")
    ax[0].set_title(title or "the consistency function is constant along each trajectory")
    fig.tight_layout()
    return fig


def plot_orders(Ns, errors_by_method: dict, *, ax=None, title: str | None = None, xlabel: str = "N (grid size)"):
    """Error vs N on log-log axes, one line per method, the fitted order (-slope) in the legend; the x ticks are
    the grid sizes themselves (20, 40, 80, not 2 x 10^1)."""
    fig, ax = _ax(ax, figsize=(5, 4))
    for i, (name, errs) in enumerate(errors_by_method.items()):
        order = fit_order(Ns, errs)
        ax.loglog(Ns, errs, "o-", color=f"C{i}", label=f"{name}: order {order:.2f}")
    ax.set(xlabel=xlabel, ylabel="mean error", title=title or "global error of the solver")
    readable_log_axis(ax.xaxis, ticks=Ns)
    readable_log_axis(ax.yaxis)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return fig


def readable_log_axis(axis, *, ticks=None) -> None:
    """Label a log axis with plain numbers a student reads at a glance (0.05, 0.1, 0.2 or 20, 40, 80; never
    2 x 10^1 or overlapping minor labels). ``ticks``: label exactly these values; otherwise 1-2-5 steps when the
    axis spans about a decade (finer below), 1-3 steps up to three decades, powers of ten beyond. Call it after
    plotting."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    if ticks is not None:
        axis.set_major_locator(FixedLocator([float(t) for t in ticks]))
    else:
        lo, hi = sorted(abs(v) for v in axis.get_view_interval())
        decades = np.log10(hi / lo) if lo > 0 else np.inf
        subs = ((1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0) if decades <= 0.6 else (1.0, 2.0, 5.0) if decades <= 1.5
                else (1.0, 3.0) if decades <= 3 else (1.0,))
        axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def image_grid(x, *, nrow: int = 8, pad: int = 0) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> one (rows*(H+pad)-pad, nrow*(W+pad)-pad, C) array in [0, 1]; ``pad`` white
    pixels between tiles (1 keeps 8x8 digits apart)."""
    x = _np(x).clip(-1, 1) * 0.5 + 0.5
    b, c, h, w = x.shape
    rows = -(-b // nrow)
    grid = np.ones((rows * (h + pad) - pad, nrow * (w + pad) - pad, c))
    for i in range(b):
        r, q = divmod(i, nrow)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = x[i].transpose(1, 2, 0)
    return grid


GRID_MAX = 64
"""save_samples_figure shows at most this many images (an 8 x 8 grid)."""


def save_samples_figure(x, path: str | Path, *, title: str = "") -> Path:
    """Save samples as a figure: a scatter for 2D points, an image grid of the first GRID_MAX for images."""
    if x.ndim == 2 and x.shape[1] == 2:
        fig = plot_points(x, title=title)
    else:
        fig, ax = plt.subplots(figsize=(6, 6))
        g = image_grid(x[:GRID_MAX], pad=1)
        ax.imshow(g.squeeze(-1) if g.shape[-1] == 1 else g, cmap="gray")
        ax.set_axis_off()
        ax.set_title(title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
