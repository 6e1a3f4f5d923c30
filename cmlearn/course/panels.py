"""Interactive panels for the notebooks, in three layers: compute (pure), plot (cmlearn.course.plotting), wiring
(ipywidgets).

Each panel returns a ``Panel`` whose ``controls`` are the sliders (set ``.value`` to drive it headlessly), whose
``summary`` is an HTML widget describing the last result, and whose ``state`` holds the last computed result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import torch

from cmlearn.core.pfode import solve
from cmlearn.core.schedules import EPS, RHO, T_MAX, karras_sigmas
from cmlearn.course.plotting import plot_points, plot_trajectories
from cmlearn.metrics import sliced_wasserstein
from cmlearn.runtime import seed_everything

# ---------------------------------------------------------------- compute


def pf_ode_compute(dist, *, N: int, eps: float, rho: float, method: str = "heun", n: int = 2000, seed: int = 0,
                   T: float = T_MAX) -> dict:
    """Solve the exact-score PF ODE from N(0, T^2 I) on the Karras grid (N, eps, rho); distance of the endpoints."""
    gen = seed_everything(seed)  # same noise and data for every slider position
    ts = karras_sigmas(int(N), eps=float(eps), T=T, rho=float(rho))
    xT = T * torch.randn(n, dist.dim, dtype=torch.float64, generator=gen)
    traj = solve(xT, ts.flip(0), score=dist.score, method=method, return_trajectory=True)
    data = dist.sample(n, generator=gen)
    nfe = (N - 1) * (2 if method == "heun" else 1)
    return {"ts": ts, "traj": traj, "end": traj[-1], "data": data, "nfe": nfe,
            "sw": sliced_wasserstein(traj[-1], data, n_projections=200), "N": int(N), "eps": float(eps),
            "rho": float(rho), "method": method}


# ---------------------------------------------------------------- plot


def pf_ode_plot(res: dict):
    """Left: the time grid; middle: trajectories; right: endpoints against data."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    ts = res["ts"].numpy()
    axes[0].semilogy(range(1, len(ts) + 1), ts, "o-", ms=3)
    axes[0].set(xlabel="i", ylabel="t_i", title=f"Karras grid: N={res['N']}, eps={res['eps']:.3g}, rho={res['rho']:g}")
    plot_trajectories(res["traj"], ax=axes[1], title=f"{res['method']}, {res['nfe']} NFE")
    plot_points(res["data"], ax=axes[2], color="0.7", s=10, alpha=0.5)  # a grey halo under small, strong red dots
    plot_points(res["end"], ax=axes[2], color="C3", s=4, alpha=0.9,
                title=f"endpoints (red) vs data (grey): SW {res['sw']:.3f}")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- wiring


@dataclass
class Panel:
    """Sliders (``controls``), a figure ``output``, a text ``summary``, the last ``state``; ``widget`` shows it."""

    controls: dict
    output: Any
    summary: Any
    widget: Any
    state: dict = field(default_factory=dict)
    update: Callable | None = None


def make_panel(controls: dict, compute: Callable[..., dict], plot: Callable[[dict], Any],
               describe: Callable[[dict], str], *, constrain: Callable[[Any], None] | None = None) -> Panel:
    """Wire sliders to compute -> plot -> output; every change recomputes and redraws.

    ``constrain(change)`` runs first on each change and may set other controls (or put this one back, e.g. to keep
    time points ordered); the values it leaves are computed once. A change that leaves every value as it was
    (a control put back where it stood) only refreshes the summary.
    """
    import ipywidgets as w
    from IPython.display import display

    out, summary = w.Output(), w.HTML()
    panel = Panel(controls=controls, output=out, summary=summary,
                  widget=w.VBox([w.HBox(list(controls.values())), summary, out]))
    busy, last = [False], [None]

    def update(change=None):
        if busy[0]:  # a value set by ``constrain`` below: computed once, after it
            return
        busy[0] = True
        try:
            if constrain is not None and change is not None:
                constrain(change)
            kwargs = {k: c.value for k, c in controls.items()}
            if change is not None and kwargs == last[0]:
                summary.value = describe(panel.state)
                return
            res = compute(**kwargs)
            panel.state, last[0] = res, kwargs
            summary.value = describe(res)
            fig = plot(res)
            out.clear_output(wait=True)
            with out:
                display(fig)
            plt.close(fig)
        finally:
            busy[0] = False

    for c in controls.values():
        c.observe(update, names="value")
    panel.update = update
    update()
    return panel


def pf_ode_panel(dist, *, N: int = 18, eps: float = EPS, rho: float = RHO, n: int = 1000) -> Panel:
    """Sliders for N, eps, rho and the solver over the exact-score PF ODE of ``dist`` (notebook 01)."""
    import ipywidgets as w

    style = {"description_width": "initial"}
    lo = math.log10(min(eps, EPS))
    controls = {
        "N": w.IntSlider(value=N, min=2, max=80, description="N", style=style),
        # the exponent grid starts at log10(eps) so the default eps (the paper's 0.002) is on it exactly
        "eps": w.FloatLogSlider(value=eps, base=10, min=lo, max=lo + 2.6, step=0.1, description="eps", style=style),
        "rho": w.FloatSlider(value=rho, min=1.0, max=10.0, step=0.5, description="rho", style=style),
        "method": w.Dropdown(options=["heun", "euler"], value="heun", description="solver"),
    }

    def describe(r):
        return (f"<b>{r['method']}</b>, N = {r['N']}, eps = {r['eps']:.4g}, rho = {r['rho']:g}: {r['nfe']} NFE, "
                f"sliced W2(endpoints, data) = {r['sw']:.4f}")

    return make_panel(controls, lambda **kw: pf_ode_compute(dist, n=n, **kw), pf_ode_plot, describe)
