"""Notebook 07 helpers: a panel for Algorithm 1's schedule (number of steps, each time point) and the search figure.

Three layers like ``cmlearn.course.panels``: compute (pure), plot, wiring (``make_panel``); drive
``panel.controls`` from code by setting ``.value``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn

from cmlearn.core.sampling import default_taus, prior_noise, sample
from cmlearn.core.schedules import EPS, T_MAX
from cmlearn.core.search import SearchResult
from cmlearn.course.plotting import plot_points
from cmlearn.metrics import sliced_wasserstein

MAX_STEPS = 4

# ---------------------------------------------------------------- compute


def schedule_from_controls(steps: int, times: Sequence[float], *, T: float = T_MAX) -> list[float]:
    """[T, times[0], ..., times[steps - 2]], sorted decreasing with repeats dropped (sliders may cross)."""
    ts = sorted({float(t) for t in times[: max(int(steps) - 1, 0)] if float(t) < T}, reverse=True)
    return [T, *ts]


def schedule_compute(model: nn.Module, ref: torch.Tensor, *, steps: int, t2: float, t3: float, t4: float,
                     seed: int = 0, n_projections: int = 200, T: float = T_MAX) -> dict:
    """Algorithm 1 samples (fixed noise seed) for the slider schedule and their sliced W2 to ``ref``."""
    taus = schedule_from_controls(steps, [t2, t3, t4], T=T)
    even = default_taus(len(taus), T=T)

    def draw(ts: list[float]) -> torch.Tensor:  # the same noise seed for both schedules (a paired comparison)
        gen = torch.Generator().manual_seed(seed)
        return sample(model, prior_noise(len(ref), ref.shape[1:], sigma=ts[0], generator=gen), ts, generator=gen)

    x, x_even = draw(taus), draw(even)
    return {"taus": taus, "samples": x, "data": ref, "steps": int(steps),
            "sw": sliced_wasserstein(x, ref, n_projections=n_projections),
            "even": even, "sw_even": sliced_wasserstein(x_even, ref, n_projections=n_projections)}


# ---------------------------------------------------------------- plot


def schedule_plot(res: dict):
    """Left: the chosen time points against the evenly spaced ones; right: samples over data."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    ax = axes[0]
    ax.semilogx(res["even"], [0] * len(res["even"]), "s", color="0.6", ms=8, label="evenly spaced (default_taus)")
    ax.semilogx(res["taus"], [1] * len(res["taus"]), "o", color="C3", ms=8, label="this schedule")
    for i, t in enumerate(res["taus"]):
        ax.annotate(f"tau{i + 1}={t:.3g}", (t, 1), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
    ax.set(ylim=(-0.7, 1.8), yticks=[], xlabel="t", xlim=(EPS, 2 * T_MAX),
           title=f"{len(res['taus'])} calls: SW {res['sw']:.4f} (even: {res['sw_even']:.4f})")
    ax.legend(fontsize=8, loc="lower left")
    plot_points(res["data"], ax=axes[1], color="0.6", s=4)
    plot_points(res["samples"], ax=axes[1], color="C3", s=4, title="samples (red) vs data")
    fig.tight_layout()
    return fig


def plot_search(result: SearchResult, *, sweeps: Mapping[int, Sequence[tuple[float, float]]] | None = None,
                even: Mapping[int, float] | None = None):
    """One panel per greedy step: metric against the candidate time (evaluated by the ternary search, numbered in
    order), the chosen time marked; ``sweeps`` (step number -> all (time, metric)) draws the full curve beneath, and
    ``even`` (step number -> metric of the evenly spaced schedule of that length) a reference line."""
    k = len(result.steps)
    if k == 0:
        raise ValueError("the search has a single time point: nothing to plot")
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 3.4), squeeze=False)
    for j, (ax, st) in enumerate(zip(axes[0], result.steps)):
        n = j + 2
        if sweeps and n in sweeps:
            ts, vs = zip(*sorted(sweeps[n]))
            ax.semilogx(ts, vs, "-", color="0.7", label="all candidates")
        ts, vs = zip(*st["evaluated"])
        ax.semilogx(ts, vs, "o", color="C0", ms=5, label="ternary search")
        for i, (t, v) in enumerate(st["evaluated"]):
            ax.annotate(str(i + 1), (t, v), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.semilogx([st["time"]], [st["value"]], "*", color="C3", ms=14, label=f"chosen {st['time']:.3g}")
        if even and n in even:
            ax.axhline(even[n], color="C2", ls="--", lw=1, label=f"even {n}-step")
        ax.set(xlabel=f"tau{n}", ylabel="metric", title=f"step {n}: {[round(t, 3) for t in result.taus[:n]]}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- wiring


def schedule_panel(model: nn.Module, ref: torch.Tensor, *, steps: int = 2, times: Sequence[float] = (0.8, 0.2, 0.05),
                   seed: int = 0, T: float = T_MAX):
    """Slider for the number of calls and one log-slider per later time point (tau_1 = T); returns a ``Panel``."""
    import ipywidgets as w

    from cmlearn.course.panels import make_panel

    if not 1 <= int(steps) <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if len(times) != MAX_STEPS - 1:
        raise ValueError(f"times must hold {MAX_STEPS - 1} values (tau2..tau{MAX_STEPS}), got {list(times)}")
    style = {"description_width": "initial"}
    controls = {"steps": w.IntSlider(value=int(steps), min=1, max=MAX_STEPS, description="calls", style=style)}
    for i, t in enumerate(times):
        controls[f"t{i + 2}"] = w.FloatLogSlider(value=float(t), base=10, min=-2.5, max=1.8, step=0.05,
                                                 description=f"tau{i + 2}", readout_format=".3g", style=style)

    def describe(r):
        better = "better" if r["sw"] < r["sw_even"] else "worse"
        return (f"schedule {[round(t, 4) for t in r['taus']]}: sliced W2 to data {r['sw']:.4f}, {better} than the "
                f"evenly spaced {[round(t, 4) for t in r['even']]} ({r['sw_even']:.4f})")

    def compute(**kw):
        return schedule_compute(model, ref, seed=seed, T=T, **kw)

    return make_panel(controls, compute, schedule_plot, describe)
