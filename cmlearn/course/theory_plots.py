"""Figures of the theory checks (cmlearn.theory): Theorem 1, Theorem 2, Lemma 1 and Algorithm 4 on 2D toys.

The theory modules compute; these functions only draw their results. Each returns a matplotlib Figure (or the
axes it drew into) and never shows it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.sampling import default_taus
from cmlearn.course.plotting import readable_log_axis
from cmlearn.theory.theorem1 import ErrorCurve
from cmlearn.theory.toy_editing import conditional_sample, edit_conditional

__all__ = ["plot_conditionals", "plot_error_vs_dt", "plot_lemma1", "plot_theorem2"]


def plot_error_vs_dt(curves: dict[str, ErrorCurve], *, trained: dict | None = None, min_N: int = 0,
                     ax: Axes | None = None,
                     title: str = "Theorem 1: zero-loss CD model vs the exact consistency function") -> Figure:
    """Theorem 1: mean (solid) and sup (dashed) error against dt, log-log, with slope-1 and slope-2 guides.

    ``trained`` maps a label to (dt, mean error) of trained models, drawn as markers on the same axes; the
    legend's orders are fitted over the grids with N >= ``min_N``.
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.6))
    for k, (solver, c) in enumerate(curves.items()):
        color = f"C{k}"
        p_mean, p_sup = c.order("mean", min_N=min_N), c.order("sup", min_N=min_N)
        ax.plot(c.dt, c.mean, "o-", color=color, label=f"{solver}: mean (order {p_mean:.2f})")
        ax.plot(c.dt, c.sup, "s--", color=color, alpha=0.6, label=f"{solver}: sup (order {p_sup:.2f})")
    dts = torch.tensor([min(min(c.dt) for c in curves.values()), max(max(c.dt) for c in curves.values())])
    for p, ref in ((1, curves.get("euler")), (2, curves.get("heun"))):
        if ref is not None:
            anchor = ref.mean[-1] / ref.dt[-1] ** p
            ax.plot(dts.numpy(), (anchor * dts**p).numpy(), ":", color="0.5", lw=1)
            ax.annotate(f"slope {p}", (float(dts[0]), float(anchor * dts[0] ** p)), fontsize=8, color="0.4")
    for j, (label, (dt, err)) in enumerate((trained or {}).items()):
        ax.plot([dt], [err], "*", ms=13, color=f"C{j + 3}", label=label, zorder=5)
    ax.set(xscale="log", yscale="log", xlabel=r"$\Delta t = \max_n (t_{n+1} - t_n)$",
           ylabel=r"$\| f_\theta(x, t_n) - f(x, t_n) \|$", title=title)
    readable_log_axis(ax.xaxis)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_theorem2(vs_N: dict, floor: dict, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Theorem 2 in three panels: losses vs N, relative gradient difference vs N, and its Monte Carlo floor vs M.

    Left: L_CD, L_CT and L_CT - L_CD against N; middle: the relative gradient difference against N, plain CT (a
    Monte Carlo floor) and CT with z averaged out given x_{t_{n+1}} (falls like dt); right: the plain relative
    difference against M (the floor falls like M^-1/2). Inputs: ``theorem2_vs_N`` and ``gradient_floor_vs_M``.
    """
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    fig = axes[0].figure
    Ns = vs_N["Ns"]
    axes[0].loglog(Ns, vs_N["loss_cd"], "o-", label=f"$L_{{CD}}$ (order {vs_N['order_cd']:.2f})")
    axes[0].loglog(Ns, vs_N["loss_ct"], "s-", label=f"$L_{{CT}}$ (order {vs_N['order_ct']:.2f})")
    axes[0].loglog(Ns, [abs(d) for d in vs_N["diff"]], "^--", label=f"$L_{{CT}} - L_{{CD}}$ "
                   f"(order {vs_N['order_diff']:.2f})")
    axes[0].set(xlabel="N", ylabel="loss", title="loss values (orders in 1/N)")
    axes[0].legend(fontsize=8)
    axes[1].loglog(Ns, vs_N["rel_diff"], "s-", color="C1", label=f"plain CT, M = {vs_N['M']}")
    if vs_N.get("rel_cond"):
        axes[1].loglog(Ns, vs_N["rel_cond"], "o-", color="C0",
                       label=f"CT, z averaged given $x_{{t_{{n+1}}}}$ (order {vs_N['order_rel_cond']:.2f})")
        ref = [vs_N["rel_cond"][0] * dt / vs_N["dt"][0] for dt in vs_N["dt"]]
        axes[1].loglog(Ns, ref, "k:", label=r"$\propto \Delta t$")
    axes[1].set(xlabel="N", ylabel=r"$|g_{CT} - g_{CD}| / |g_{CD}|$", title="gradients: relative difference")
    axes[1].legend(fontsize=8)
    label = f"N = {floor['N']}: slope {floor['slope']:.2f}"
    axes[2].loglog(floor["Ms"], floor["rel_diff"], "o-", color="C1", label=label)
    axes[2].loglog(floor["Ms"], floor["predicted"], "k:", label=r"$\sqrt{\mathrm{tr\,Cov}/M}\,/\,|g_{CD}|$")
    axes[2].set(xlabel="M (samples)", title="plain CT: a Monte Carlo floor")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lemma1(err: dict, var: dict, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Lemma 1: RMS error of s_M against M (left, with the prediction) and one-sample variance against t (right)."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    fig = axes[0].figure
    axes[0].loglog(err["Ms"], err["rmse"], "o-", label=f"measured (slope {err['slope']:.3f})")
    axes[0].loglog(err["Ms"], err["predicted"], "k:", label=r"$\sqrt{\mathrm{tr\,Cov}[x|x_t]/M}\,/\,t^2$")
    axes[0].set(xlabel="M (posterior samples)", ylabel=r"RMS $\|\hat s_M - \nabla \log p_t\|$",
                title=f"Lemma 1 estimator at t = {err['t']:g}")
    axes[0].legend(fontsize=8)
    axes[1].loglog(var["ts"], var["measured"], "o", label=r"measured Var$[\hat s_1]$")
    axes[1].loglog(var["ts"], var["predicted"], "-", label=r"tr Cov$[x|x_t]/t^4$ (Tweedie)")
    axes[1].loglog(var["ts"], var["signal"], "--", label=r"signal $E\|\nabla \log p_t\|^2$")
    axes[1].set(xlabel="t", title="single-sample estimator: variance vs t")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_conditionals(model: nn.Module, dist: GaussianMixture, values: Sequence[float], *, steps: int = 4,
                      n_per: int = 2000, known: int = 0, seed: int = 0,
                      ax: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Algorithm 4 on a 2D toy: histograms of the unknown coordinate, zero-shot vs exact, per value; the axes."""
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
