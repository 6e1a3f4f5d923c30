"""Notebook 10 helpers (continuous time): Appendix B's gaps, sCM's tangent traces, MeanFlow's u and its own flow, the
widget panel and the closing table of sample distances."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from cmlearn.core.meanflow import exact_average_velocity
from cmlearn.course.panels import Panel, make_panel
from cmlearn.course.plotting import plot_points, readable_log_axis
from cmlearn.train.config import TrainConfig
from cmlearn.train.scm_stability import tangent_trace


def plot_limit_gaps(res: dict):
    """Log-log: relative gaps of the scaled discrete CD/CT gradients (and CD's value) to their N -> infinity limits."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    Ns = res["Ns"]
    ax.loglog(Ns, res["cd"]["grad_gap"], "o-", label=f"CD gradient (Thm 5), order {res['cd']['order']:.2f}")
    ax.loglog(Ns, res["ct"]["grad_gap"], "s-", label=f"CT gradient (Thm 6), order {res['ct']['order']:.2f}")
    ax.loglog(Ns, res["cd"]["value_gap"], "^--", label=f"CD value (Thm 3), order {res['cd']['value_order']:.2f}")
    ax.loglog(Ns, [res["cd"]["grad_gap"][0] * Ns[0] / n for n in Ns], "k:", label="slope -1")
    readable_log_axis(ax.xaxis, ticks=Ns)
    ax.set(xlabel="N (grid size)", ylabel="relative gap to the continuous objective", title="Appendix B, measured")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tangent_traces(traces: dict[str, dict]):
    """Mean ||g|| (before normalization) per step of each sCT variant; a cross marks a run that hit NaN/Inf."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, tr in traces.items():
        line, = ax.semilogy(tr["tangent_norm"], label=name)
        if tr["blew_up_at"] is not None:
            ax.plot([tr["blew_up_at"]], [max(v for v in tr["tangent_norm"] if v == v and v < float("inf"))], "x",
                    color=line.get_color(), ms=10)
    ax.set(xlabel="training step", ylabel="mean tangent norm ||g||", title="sCT on the toy: the tangent norm")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def average_velocity_error(model, dist, *, pairs=((0.0, 1.0), (0.0, 0.5), (0.5, 1.0)), n: int = 2000,
                           seed: int = 0) -> dict:
    """Relative l2 error of a MeanFlow model's u(z, r, t) against the exact average velocity (dopri5 on the exact
    mixture) at points z ~ p_t, for each (r, t) in ``pairs``: {(r, t): error}."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for r, t in pairs:
        x, e = dist.sample(n, generator=g), torch.randn(n, dist.dim, dtype=torch.float64, generator=g)
        z = (1 - t) * x + t * e
        exact = exact_average_velocity(dist.denoiser, z, r, t)
        with torch.no_grad():
            learned = model(z.float(), r, t).double()
        out[(r, t)] = float((learned - exact).norm() / exact.norm())
    return out


def own_flow_distances(model, ref: torch.Tensor, *, jumps: tuple[int, ...] = (1, 2, 4),
                       euler: tuple[int, ...] = (8, 32, 100), seed: int = 0) -> dict[str, dict[int, float]]:
    """Sliced W2 to ``ref`` (n, 2) of a MeanFlow model's jumps (``meanflow_sample``, k NFE) and of Euler on its own
    instantaneous velocity u(z, t, t) (``meanflow_velocity_sample``): {"jumps": {k: sw}, "euler": {k: sw}}, the
    same noise z (n = len(ref), seed ``seed``) for every row."""
    from cmlearn.core.sampling import meanflow_sample, meanflow_velocity_sample
    from cmlearn.metrics import sliced_wasserstein

    z = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    out: dict[str, dict[int, float]] = {"jumps": {}, "euler": {}}
    for k in jumps:  # both samplers run under no_grad
        out["jumps"][k] = sliced_wasserstein(meanflow_sample(model, z, steps=k).double(), ref)
    for k in euler:
        out["euler"][k] = sliced_wasserstein(meanflow_velocity_sample(model, z, steps=k).double(), ref)
    return out


def continuous_panel(base_sct: TrainConfig, base_meanflow: TrainConfig, *, steps: int) -> Panel:
    """Widget: tangent normalization on/off and warm-up length drive a short sCT run (its tangent norm); the
    r != t fraction drives a short MeanFlow run (its 1-step samples). ``steps`` per run."""
    import ipywidgets as w

    from cmlearn.train.continuous import continuous_loss
    from cmlearn.train.runs import build_model, build_source

    style = {"description_width": "initial"}
    controls = {
        "normalize": w.Checkbox(value=True, description="tangent normalization"),
        "warmup": w.IntSlider(value=0, min=0, max=steps, step=max(1, steps // 10), description="warm-up", style=style),
        "ratio": w.FloatSlider(value=0.25, min=0.0, max=1.0, step=0.25, description="r != t fraction", style=style),
    }

    def compute(normalize: bool, warmup: int, ratio: float) -> dict:
        sct = base_sct.override({"tangent_norm": 0.1 if normalize else 0.0, "tangent_warmup": int(warmup)})
        trace = tangent_trace(sct, steps=steps)
        mf = base_meanflow.override({"mf_ratio": float(ratio)})
        torch.manual_seed(0)
        source = build_source(mf)
        model, loss_fn = build_model(mf, shape=source.shape), continuous_loss(mf)
        opt, gen = torch.optim.Adam(model.parameters(), lr=mf.lr), torch.Generator().manual_seed(0)
        for k in range(steps):
            loss = loss_fn(model, model, source.batch(mf.batch_size, gen), k=k, generator=gen).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            z = torch.randn(2000, source.shape[0], generator=torch.Generator().manual_seed(1))
            x = z - model(z, 0.0, 1.0)
        return {"trace": trace, "samples": x, "normalize": normalize, "warmup": warmup, "ratio": ratio}

    def plot(res: dict):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].semilogy(res["trace"]["tangent_norm"])
        axes[0].set(xlabel="step", ylabel="mean ||g||", title="sCT tangent norm")
        plot_points(res["samples"], ax=axes[1], title=f"MeanFlow 1 step, r != t fraction {res['ratio']:g}")
        fig.tight_layout()
        return fig

    def describe(res: dict) -> str:
        tn = res["trace"]["tangent_norm"]
        return (f"sCT: normalization {'on' if res['normalize'] else 'off'}, warm-up {res['warmup']} steps: ||g|| "
                f"{tn[0]:.3g} -> {tn[-1]:.3g}; MeanFlow with r != t on {res['ratio']:.0%} of samples")

    return make_panel(controls, compute, plot, describe)
