"""Notebook 07 helpers: a panel for Algorithm 1's schedule (number of steps, each time point) and the search figure.

Three layers like ``cmlearn.course.panels``: compute (pure), plot, wiring (``make_panel``); drive
``panel.controls`` from code by setting ``.value``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn

from cmlearn.core.sampling import default_taus, prior_noise, sample
from cmlearn.core.schedules import EPS, T_MAX
from cmlearn.core.search import SearchResult
from cmlearn.course.plotting import plot_points, readable_log_axis
from cmlearn.metrics import sliced_wasserstein
from cmlearn.runtime import fast_mode
from cmlearn.train.config import TrainConfig
from cmlearn.train.presets import get_preset


def toy_cd_config() -> TrainConfig:
    """The toy-cd run of notebook 07 (and of notebook 11, which reuses it): the preset, and in fast mode a faster
    eval EMA (0.99: with the preset's 0.998, 300 steps would leave the EMA weights near the initial ones)."""
    cfg = get_preset("toy-cd")
    return cfg.override({"ema_decay": 0.99}) if fast_mode() else cfg


MAX_STEPS = 4
MANTISSAS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
"""The time sliders' values in each decade: about ten per decade, log-spaced, and round (0.05, 0.2, 0.8, 1)."""

# ---------------------------------------------------------------- compute


def time_grid(*, eps: float = EPS, T: float = T_MAX, extra: Sequence[float] = ()) -> list[float]:
    """The values a time slider can take: round numbers (``MANTISSAS`` x 10^k) strictly between eps and T, plus
    ``extra``, ascending. Exact decimal values, so a value set from code is one the slider can show."""
    lo, hi = int(math.floor(math.log10(eps))), int(math.ceil(math.log10(T)))
    ts = {float(f"{m}e{k}") for k in range(lo, hi + 1) for m in MANTISSAS} | {float(t) for t in extra}
    return sorted(t for t in ts if eps < t < T)


def schedule_from_controls(steps: int, times: Sequence[float], *, T: float = T_MAX) -> list[float]:
    """[T, times[0], ..., times[steps - 2]]: the time points in use. They must decrease (ValueError otherwise:
    the panel keeps its sliders ordered, so tau2 is always the second call, tau3 the third)."""
    used = [float(t) for t in times[: max(int(steps) - 1, 0)]]
    taus = [float(T), *used]
    if any(a <= b for a, b in zip(taus, taus[1:])):
        raise ValueError(f"time points must decrease from T = {T:g}: got {taus}")
    return taus


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


def ordered_indices(idx: Sequence[int], moved: int, wanted: int, *, active: int, size: int) -> tuple[list[int], int]:
    """Keep the time sliders ordered (tau2 > tau3 > ...), as grid indices (ascending grid of ``size`` values).

    Slider ``moved`` asks for index ``wanted``; the first ``active`` sliders are in use. It stops one grid step
    short of an active neighbour (clamped, never passing it), while unused sliders are pushed along. Returns the
    new indices and where the moved slider ended.
    """
    idx, k = list(idx), len(idx)
    above = [j for j in range(moved) if j < active]  # used sliders before it (larger times)
    below = [j for j in range(moved + 1, k) if j < active]
    hi = idx[above[-1]] - (moved - above[-1]) if above else size - 1 - moved
    lo = idx[below[0]] + (below[0] - moved) if below else k - 1 - moved
    got = min(max(wanted, lo), hi)
    idx[moved] = got
    for j in range(moved + 1, k):  # push unused sliders below it further down ...
        idx[j] = min(idx[j], idx[j - 1] - 1)
    for j in range(moved - 1, -1, -1):  # ... and unused ones above it further up
        idx[j] = max(idx[j], idx[j + 1] + 1)
    return idx, got


# ---------------------------------------------------------------- plot


def _label_levels(times: Sequence[float], *, lo: float, hi: float, gap: float = 0.14, levels: int = 3) -> list[int]:
    """A text level per time point (0 = nearest the marker) so that labels of close points do not overlap: a
    point within ``gap`` (fraction of the log axis) of the last label on a level goes one level further out."""
    span = math.log(hi / lo)
    last: dict[int, float] = {}
    out = []
    for t in times:
        x = math.log(t / lo) / span
        level = next((v for v in range(levels) if v not in last or abs(x - last[v]) >= gap), levels - 1)
        last[level] = x
        out.append(level)
    return out


def schedule_plot(res: dict):
    """Left: the chosen time points (red, labelled above) and the evenly spaced ones (grey, labelled below) on a
    log time axis; right: samples over data."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    ax = axes[0]
    lo, hi = EPS, 2 * T_MAX
    rows = ((1, res["taus"], "o", "C3", +1), (0, res["even"], "s", "0.55", -1))
    for y, ts, marker, color, side in rows:
        ax.semilogx(ts, [y] * len(ts), marker, color=color, ms=8)
        for i, (t, level) in enumerate(zip(ts, _label_levels(ts, lo=lo, hi=hi))):
            ax.annotate(f"tau{i + 1}={t:.3g}", (t, y), textcoords="offset points", xytext=(0, side * (10 + 11 * level)),
                        ha="center", va="bottom" if side > 0 else "top", fontsize=8, color=color)
    ax.set(ylim=(-1.3, 2.3), xlim=(lo, hi), xlabel="t (log scale)",
           title=f"{len(res['taus'])} calls: SW {res['sw']:.4f} (evenly spaced: {res['sw_even']:.4f})")
    ax.set_yticks([1, 0], ["this schedule", "evenly spaced"])
    readable_log_axis(ax.xaxis)
    plot_points(res["data"], ax=axes[1], color="0.75", s=4)
    plot_points(res["samples"], ax=axes[1], color="C3", s=4, alpha=0.7, title="samples (red) vs data (grey)")
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
            ax.semilogx(ts, vs, ".-", color="0.7", ms=3, label="all candidates")
        ts, vs = zip(*st["evaluated"])
        ax.semilogx(ts, vs, "o", color="C0", ms=5, label="ternary search")
        for i, (t, v) in enumerate(st["evaluated"]):
            ax.annotate(str(i + 1), (t, v), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.semilogx([st["time"]], [st["value"]], "*", color="C3", ms=14, label=f"chosen {st['time']:.3g}")
        if even and n in even:
            ax.axhline(even[n], color="C2", ls="--", lw=1, label=f"even {n}-step")
        ax.set(xlabel=f"tau{n} (log scale)", ylabel="metric",
               title=f"step {n}: {[round(t, 3) for t in result.taus[:n]]}")
        readable_log_axis(ax.xaxis)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- wiring


def schedule_panel(model: nn.Module, ref: torch.Tensor, *, steps: int = 2, times: Sequence[float] = (0.8, 0.2, 0.05),
                   seed: int = 0, T: float = T_MAX):
    """A slider for the number of calls and one per later time point (tau_1 = T); returns a ``Panel``.

    Each time slider steps over ``time_grid`` (round values, about ten per decade, plus ``times``), so what code
    sets is what the slider shows, exactly. The sliders stay ordered, tau2 > tau3 > tau4: a slider in use stops one
    grid step before its neighbour in use (the summary says so), and unused ones are pushed along.
    """
    import ipywidgets as w

    from cmlearn.course.panels import make_panel

    if not 1 <= int(steps) <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if len(times) != MAX_STEPS - 1:
        raise ValueError(f"times must hold {MAX_STEPS - 1} values (tau2..tau{MAX_STEPS}), got {list(times)}")
    eps = float(getattr(model, "eps", EPS))
    if not all(eps < t < T for t in times) or any(a <= b for a, b in zip(times, times[1:])):
        raise ValueError(f"times must decrease strictly inside ({eps:g}, {T:g}), got {list(times)}")
    grid = time_grid(eps=eps, T=T, extra=times)
    options = [(f"{t:g}", t) for t in grid]
    style = {"description_width": "initial"}
    names = [f"t{i + 2}" for i in range(MAX_STEPS - 1)]
    controls = {"steps": w.IntSlider(value=int(steps), min=1, max=MAX_STEPS, description="calls", style=style)}
    for name, t in zip(names, times):
        controls[name] = w.SelectionSlider(options=options, value=float(t), description=f"tau{name[1:]}",
                                           style=style)
    note = [""]

    def constrain(change):
        note[0] = ""
        if change.owner is controls["steps"]:
            return
        moved = next(i for i, n in enumerate(names) if controls[n] is change.owner)
        idx = [grid.index(controls[n].value) for n in names]
        new, got = ordered_indices(idx, moved, grid.index(change.new), active=int(controls["steps"].value) - 1,
                                   size=len(grid))
        if grid[got] != change.new:
            note[0] = (f". Note: tau{moved + 2} stops at {grid[got]:g}, not {change.new:g}: the time points must "
                       f"decrease, tau2 > tau3 > tau4 (move its neighbour first)")
        for n, i in zip(names, new):
            controls[n].value = grid[i]

    def describe(r):
        better = "better" if r["sw"] < r["sw_even"] else "worse"
        return (f"schedule {[round(t, 4) for t in r['taus']]}: sliced W2 to data {r['sw']:.4f}, {better} than the "
                f"evenly spaced {[round(t, 4) for t in r['even']]} ({r['sw_even']:.4f})" + note[0])

    def compute(**kw):
        return schedule_compute(model, ref, seed=seed, T=T, **kw)

    return make_panel(controls, compute, schedule_plot, describe, constrain=constrain)
