"""Helpers for the consistency-training notebook (06): the N(k)/mu(k) curriculum panel (compute, plot,
wiring, like ``cmlearn.course.panels``), runs trained with a learning curve of their 1-step sample quality, and the
paper's Figure 3d in miniature (fixed N against the adaptive curriculum).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from cmlearn.core.schedules import ct_ema_decay, ct_num_steps, ict_num_steps
from cmlearn.train.cache import cache_dir, run_dir, train_or_load
from cmlearn.train.config import TrainConfig
from cmlearn.train.evaluate import sample_distance
from cmlearn.train.parallel import Job, quietly
from cmlearn.train.runs import Run

# ---------------------------------------------------------------- curriculum panel: compute


def ct_schedule_compute(*, s0: int, s1: int, mu0: float, K: int, official: bool = False, points: int = 400,
                        ict_s0: int = 10, ict_s1: int = 1280) -> dict:
    """N(k) and mu(k) of CT (App. C) at ``points`` steps of [0, K], with iCT's exponential N(k) beside them.

    ``official`` puts N(k) - 1 in mu's denominator, as the official code does.
    """
    s0, s1, K = int(s0), int(s1), int(K)
    if s0 < 1 or s1 < s0:
        raise ValueError(f"need 1 <= s0 <= s1, got s0={s0}, s1={s1}")
    if not 0 < mu0 < 1:
        raise ValueError(f"mu0 must be in (0, 1), got mu0={mu0}")
    if K < 1:
        raise ValueError(f"K must be >= 1, got K={K}")
    if official and s0 < 2:
        raise ValueError(f"the official mu(k) divides by N(k) - 1, which is 0 at k = 0 when s0={s0}; "
                         "use s0 >= 2")
    ks = torch.linspace(0, K, points).round().long().unique().tolist()
    N = [ct_num_steps(k, K=K, s0=s0, s1=s1) for k in ks]
    mu = [ct_ema_decay(k, K=K, s0=s0, s1=s1, mu0=mu0, official=official) for k in ks]
    N_ict = [ict_num_steps(k, K=K, s0=ict_s0, s1=ict_s1) for k in ks]
    return {"ks": ks, "N": N, "mu": mu, "N_ict": N_ict, "s0": s0, "s1": s1, "mu0": float(mu0), "K": K,
            "official": bool(official), "N_start": N[0], "N_end": N[-1], "mu_start": mu[0], "mu_end": mu[-1]}


# ---------------------------------------------------------------- curriculum panel: plot


def ct_schedule_plot(res: dict):
    """Left: N(k) (CT, and iCT's exponential curriculum dotted); right: mu(k)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    axes[0].step(res["ks"], res["N"], where="post", label=f"CT: s0={res['s0']}, s1={res['s1']}")
    axes[0].step(res["ks"], res["N_ict"], ":", where="post", color="0.5", label="iCT (s0=10, s1=1280)")
    axes[0].set(yscale="log", xlabel="training step k", ylabel="N(k)", title="grid size N(k)")
    axes[0].legend(fontsize=8)
    form = "official: N(k) - 1" if res["official"] else "paper: N(k)"
    axes[1].plot(res["ks"], res["mu"], color="C1")
    title = rf"target EMA $\mu(k)$, $\mu_0$={res['mu0']:g} ({form})"
    axes[1].set(xlabel="training step k", ylabel=r"$\mu(k)$", title=title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- curriculum panel: wiring


def ct_schedule_panel(*, s0: int = 2, s1: int = 150, mu0: float = 0.9, K: int = 800_000,
                      official: bool = False):
    """Sliders for s0, s1, mu0, K (and the mu form) over CT's curriculum; returns a ``widgets.Panel``."""
    import ipywidgets as w

    from cmlearn.course.panels import make_panel

    style = {"description_width": "initial"}
    controls = {
        "s0": w.IntSlider(value=s0, min=2, max=20, description="s0", style=style),
        "s1": w.IntSlider(value=s1, min=20, max=1280, step=10, description="s1", style=style),
        "mu0": w.FloatSlider(value=mu0, min=0.5, max=0.99, step=0.01, description="mu0", style=style),
        "K": w.IntSlider(value=K, min=1000, max=1_000_000, step=1000, description="K", style=style),
        "official": w.Checkbox(value=official, description="official mu (N(k) - 1)"),
    }

    def describe(r):
        return (f"N goes from {r['N_start']} to {r['N_end']} over K = {r['K']:,} steps; "
                f"mu from {r['mu_start']:.4f} to {r['mu_end']:.4f}")

    return make_panel(controls, lambda **kw: ct_schedule_compute(**kw), ct_schedule_plot, describe)


# ---------------------------------------------------------------- runs with a learning curve


def train_with_curve(cfg: TrainConfig, name: str, *, ref: torch.Tensor, cache: str | Path | None = None,
                     seed: int = 0, progress: bool | None = None) -> tuple[Run, list[tuple[int, float]]]:
    """``train_or_load`` with a learning curve: at every checkpoint the 1-step sliced W2 of the EMA model to
    ``ref`` is appended to RUN_DIR/curve.json; returns the run and its curve [(step, distance), ...]."""
    curve_file = run_dir(cfg, name, cache=cache) / "curve.json"
    record = _curve_recorder(ref, seed)
    run = train_or_load(cfg, name, cache=cache, on_checkpoint=lambda step, ema: record(curve_file.parent, step, ema),
                        needs=("curve.json",), progress=progress)
    return run, [tuple(p) for p in json.loads(curve_file.read_text())]


def _curve_recorder(ref: torch.Tensor, seed: int):
    """record(run_dir, step, ema): append the EMA model's 1-step sliced W2 to RUN_DIR/curve.json, keeping the
    points before ``step`` (a run that resumes, or restarts from step 0, continues its curve from there)."""
    curves: dict[Path, list] = {}

    def record(path, step, ema):
        path = Path(path)
        if path not in curves:
            old = json.loads((path / "curve.json").read_text()) if (path / "curve.json").exists() else []
            curves[path] = [tuple(p) for p in old if p[0] < step]
        curves[path].append((step, sample_distance(ema, ref, steps=1, seed=seed)))
        _write_json(path / "curve.json", curves[path])

    return record


def train_ensemble_with_curves(cfgs: Mapping, name: str, *, ref: torch.Tensor, cache: str | Path | None = None,
                               seed: int = 0, batched: bool = True, progress: bool | None = None
                               ) -> tuple[dict, dict]:
    """``train_with_curve`` for many small runs trained as one batched ensemble (``cmlearn.train.ensemble``):
    ``cfgs`` maps a label to a config; returns ({label: run}, {label: curve}). Curves live in RUN_DIR/curve.json,
    kept up to the step a run restarts from (an interrupted ensemble restarts from step 0)."""
    from cmlearn.train.ensemble import train_or_load_ensemble

    record = _curve_recorder(ref, seed)
    runs = train_or_load_ensemble(list(cfgs.values()), name, cache=cache, on_checkpoint=record, needs=("curve.json",),
                                  batched=batched, progress=progress)
    out_runs = dict(zip(cfgs, runs))
    out_curves = {label: [tuple(p) for p in json.loads((r.path / "curve.json").read_text())]
                  for label, r in out_runs.items()}
    return out_runs, out_curves


def curve_job(cfg: TrainConfig, name: str, *, ref: torch.Tensor, cache: str | Path | None = None) -> Job:
    """``train_with_curve`` as a ``cmlearn.train.parallel.Job``, to train beside others (``side_by_side``)."""
    cache = Path(cache) if cache is not None else cache_dir()
    return Job(partial(quietly, train_with_curve, cfg, name, ref=ref, cache=cache),
               runs=[(run_dir(cfg, name, cache=cache), cfg.steps)], needs=("curve.json",),
               here=partial(train_with_curve, cfg, name, ref=ref, cache=cache))


def ensemble_curve_job(cfgs: Mapping, name: str, *, ref: torch.Tensor, cache: str | Path | None = None) -> Job:
    """``train_ensemble_with_curves`` as a ``cmlearn.train.parallel.Job`` (its members' run directories)."""
    cache = Path(cache) if cache is not None else cache_dir()
    return Job(partial(quietly, train_ensemble_with_curves, cfgs, name, ref=ref, cache=cache),
               runs=[(run_dir(c, name, cache=cache), c.steps) for c in cfgs.values()], needs=("curve.json",),
               here=partial(train_ensemble_with_curves, cfgs, name, ref=ref, cache=cache))


def _write_json(path: Path, value) -> None:
    """Write JSON so that a reader never sees half a file (a kill mid-write leaves the old one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def plot_curves(curves: Mapping[str, list], *, bar: float | None = None, floor: float | None = None, ax=None,
                title: str = "CT: fixed N against the adaptive curriculum (paper Fig. 3d)"):
    """Each run's 1-step distance to data against the training step; ``bar``: exact-score Heun N = 18."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.2))
    for label, curve in curves.items():
        steps, vals = zip(*curve)
        ax.plot(steps, vals, "o-", ms=3, label=label)
    if bar is not None:
        ax.axhline(bar, color="0.4", ls="--", label="exact-score Heun, N = 18")
    if floor is not None:
        ax.axhline(floor, color="0.7", ls=":", label="noise floor (data vs data)")
    ax.set(yscale="log", xlabel="training step", ylabel="sliced W2 to data (1 step)", title=title)
    ax.legend(fontsize=8)
    return fig
