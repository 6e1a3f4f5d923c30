"""Helpers for the distillation notebooks (03, 04): the zero-loss model's distance, the ablation figure, and a
panel for N and the solver (compute, plot, wiring), like ``cmlearn.course.panels``. Runs come from
``cmlearn.train.cache.train_or_load``; their samples from ``cmlearn.train.evaluate``.

The panel shows, for a grid size N and a teacher solver, what a zero-loss CD model would sample in one step
(the teacher's solver composed from T down the grid: Theorem 1) beside the model trained with those settings.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch

from cmlearn.core.pfode import reference_solve
from cmlearn.core.sampling import prior_noise
from cmlearn.core.schedules import EPS, T_MAX, karras_sigmas
from cmlearn.course.plotting import plot_points, readable_log_axis
from cmlearn.metrics import sliced_wasserstein
from cmlearn.theory.theorem1 import zero_loss_model

# ---------------------------------------------------------------- N x solver ablation figure (paper Fig. 3)


def zero_loss_distance(dist, ref: torch.Tensor, *, N: int, solver: str, seed: int = 0, T: float = T_MAX,
                       eps: float = EPS) -> float:
    """Sliced W2 to ``ref`` of a zero-loss CD model's one-step samples (the solver composed from T: Thm 1)."""
    gen = torch.Generator().manual_seed(seed)
    x_T = prior_noise(len(ref), ref.shape[1:], sigma=T, generator=gen, dtype=torch.float64)
    x = zero_loss_model(x_T, N - 1, karras_sigmas(N, eps=eps, T=T), score=dist.score, solver=solver)
    return sliced_wasserstein(x, ref, n_projections=200)


def plot_ablation(results: Mapping[str, Mapping[int, float]], *, bar: float | None = None,
                  zero_loss: Mapping[str, Mapping[int, float]] | None = None, ax=None,
                  ylabel: str = "sliced W2 to data (1 step)", title: str = "CD: grid size N, teacher solver"):
    """One line per solver of the distance against N (paper Fig. 3b/c in miniature); ``bar``: teacher's;
    ``zero_loss``: the same for zero-loss models (dashed), the floor set by the teacher's discretization."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 3.8))
    for k, (solver, by_N) in enumerate(results.items()):
        Ns = sorted(by_N)
        ax.plot(Ns, [by_N[N] for N in Ns], "o-", color=f"C{k}", label=f"{solver}, trained")
        if zero_loss and solver in zero_loss:
            z = zero_loss[solver]
            ax.plot(sorted(z), [z[N] for N in sorted(z)], "x--", color=f"C{k}", alpha=0.7,
                    label=f"{solver}, zero-loss model")
    if bar is not None:
        ax.axhline(bar, color="0.5", ls="--", label="exact-score Heun, N = 18")
    ax.set(xscale="log", yscale="log", xlabel="N", ylabel=ylabel, title=title)
    readable_log_axis(ax.xaxis, ticks=sorted({N for by_N in results.values() for N in by_N}))
    readable_log_axis(ax.yaxis)
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- panel: compute


def cd_panel_compute(dist, *, N: int, solver: str, runs: Mapping | None = None, n: int = 1000, seed: int = 0,
                     T: float = T_MAX, eps: float = EPS, exact: tuple | None = None) -> dict:
    """One-step samples of the zero-loss CD model for (N, solver) and of the trained run for it, if any.

    ``runs`` maps (N, solver) to a Run. ``exact`` = (x_T, f(x_T, T)) reuses the exact consistency function at
    the start points (the same noise for every slider position); distances are sliced W2 to fresh data.
    """
    if solver not in ("euler", "heun"):
        raise ValueError(f"unknown solver {solver!r}; choose 'euler' or 'heun'")
    N = int(N)
    gen = torch.Generator().manual_seed(seed)
    data = dist.sample(n, generator=gen)
    if exact is None:
        x_T = prior_noise(n, (dist.dim,), sigma=T, generator=gen, dtype=torch.float64)
        exact = (x_T, reference_solve(x_T, T, eps, score=dist.score))
    x_T, f_exact = exact
    ts = karras_sigmas(N, eps=eps, T=T)
    zero = zero_loss_model(x_T, N - 1, ts, score=dist.score, solver=solver)
    nfe = (N - 1) * (2 if solver == "heun" else 1)
    res = {"N": N, "solver": solver, "data": data, "zero": zero, "nfe_teacher": nfe,
           "sw_zero": sliced_wasserstein(zero, data, n_projections=200),
           "err_zero": (zero - f_exact).norm(dim=1), "trained": None}
    run = (runs or {}).get((N, solver))
    if run is not None:
        with torch.no_grad():
            x = run.model(x_T.to(next(run.model.parameters())), T).double()
        res.update(trained=x, sw_trained=sliced_wasserstein(x, data, n_projections=200),
                   err_trained=(x - f_exact).norm(dim=1))
    res["available"] = sorted(runs or {})
    return res


# ---------------------------------------------------------------- panel: plot


def cd_panel_plot(res: dict):
    """Data with the zero-loss model's samples; the trained model's samples; errors to the exact f(x_T, T)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.9))
    plot_points(res["data"], ax=axes[0], color="0.75")
    plot_points(res["zero"], ax=axes[0], color="C3",
                title=f"zero-loss CD ({res['solver']}, N={res['N']}): SW {res['sw_zero']:.3f}")
    plot_points(res["data"], ax=axes[1], color="0.75")
    if res["trained"] is not None:
        plot_points(res["trained"], ax=axes[1], color="C0",
                    title=f"trained CD, 1 step: SW {res['sw_trained']:.3f}")
    else:
        axes[1].set_title("no trained run for these settings")
    errs = [("zero-loss", res["err_zero"], "C3")]
    if res["trained"] is not None:
        errs.append(("trained", res["err_trained"], "C0"))
    lo = max(1e-6, min(float(e.min()) for _, e, _ in errs))
    hi = max(float(e.max()) for _, e, _ in errs)
    bins = torch.logspace(torch.log10(torch.tensor(lo)), torch.log10(torch.tensor(hi * 1.01)), 40).numpy()
    for name, e, c in errs:
        axes[2].hist(e.numpy(), bins=bins, alpha=0.6, color=c, label=f"{name}: mean {float(e.mean()):.3g}")
    axes[2].set(xscale="log", xlabel="||f(x_T, T) - exact f(x_T, T)|| (log scale)", ylabel="samples",
                title="error to the exact consistency function")
    readable_log_axis(axes[2].xaxis)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- panel: wiring


def cd_panel(dist, *, runs: Mapping | None = None, N: int = 18, solver: str = "heun", n: int = 1000,
             seed: int = 0):
    """A slider for N and a dropdown for the solver (notebook 04); returns a ``cmlearn.course.panels.Panel``.

    With ``runs`` ((N, solver) -> Run), the N slider steps over the trained grid sizes only, so every position
    shows a trained model beside its zero-loss model; without, over N = 2 ... 80.
    """
    import ipywidgets as w

    from cmlearn.course.panels import make_panel

    Ns = sorted({int(N_) for N_, _ in runs}) if runs else list(range(2, 81))
    if int(N) not in Ns:
        raise ValueError(f"N = {N} has no trained run; choose one of {Ns}")
    gen = torch.Generator().manual_seed(seed + 1)
    x_T = prior_noise(n, (dist.dim,), sigma=T_MAX, generator=gen, dtype=torch.float64)
    exact = (x_T, reference_solve(x_T, T_MAX, EPS, score=dist.score))
    controls = {
        "N": w.SelectionSlider(options=Ns, value=int(N), description="N"),
        "solver": w.Dropdown(options=["heun", "euler"], value=solver, description="solver"),
    }

    def describe(r):
        text = (f"<b>{r['solver']}</b>, N = {r['N']}: the zero-loss model is the teacher's "
                f"{r['nfe_teacher']}-NFE sampler squeezed into 1 step (SW {r['sw_zero']:.4f})")
        if r["trained"] is not None:
            text += f"; the trained model reaches SW {r['sw_trained']:.4f}"
        else:
            text += "; trained runs: " + ", ".join(f"{s} N={k}" for k, s in r["available"])
        return text

    def compute(**kw):
        return cd_panel_compute(dist, runs=runs, n=n, seed=seed, exact=exact, **kw)

    return make_panel(controls, compute, cd_panel_plot, describe)
