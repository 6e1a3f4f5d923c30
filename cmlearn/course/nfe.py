"""Helpers of notebook 11 (and ``benchmarks/nfe_sweep.py``): the runs of the comparison, trained or loaded from the
caches of notebooks 04, 06 and 08 (same configs, so the same hashes), the methods built on them, and the log-log
figure and table of quality against NFE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from cmlearn.course.sampling import toy_cd_config
from cmlearn.runtime import fast_mode, pick
from cmlearn.train.cache import cache_dir, run_location, train_or_load, with_teacher
from cmlearn.train.config import TrainConfig
from cmlearn.train.nfe import cm_method, exact_method, pd_method, teacher_method
from cmlearn.train.parallel import chain, train_job
from cmlearn.train.pd import pd_job, pd_train_or_load
from cmlearn.train.presets import get_preset

TOY_SMALL = {"net_kwargs": {"width": 128, "depth": 3, "emb_dim": 32}, "batch_size": 256}
"""Fast mode's smoke-sized toy network (notebooks 04 and 06 use the same)."""

CM_LABELS = {"cd": "CD", "ct": "CT", "ict": "iCT", "sct": "sCT", "meanflow": "MeanFlow"}
"""The one-or-few-step models of the sweep, by run key."""

SAMPLERS = {"Euler (DDIM)": "euler", "Heun": "heun", "DPM-Solver++(2M)": "dpmpp-2m", "UniPC": "unipc"}


def toy_data_file() -> Path:
    """Notebook 04's 20k points of the eight Gaussians (seed 11), the data the learned teacher and CD train on."""
    from cmlearn.data.toys2d import preset

    path = cache_dir() / "nb04-eight_gaussians-20k.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, preset("eight_gaussians").sample(20_000, generator=torch.Generator().manual_seed(11)).numpy())
    return path


def toy_runs(methods: Sequence[str] = ("cd", "pd", "ct", "ict", "sct", "meanflow"), *,
             progress: bool | None = False, retrain: bool = False) -> dict:
    """The eight-Gaussians runs. The teacher is the exact score, as for the toy-cd preset: CD ("cd") is toy-cd
    (notebook 07's run, also notebook 04's exact-teacher run), PD ("pd", {steps: Run}) is toy-pd from the same
    exact denoiser; CT and iCT are notebook 06's; sCT ("sct") and MeanFlow ("meanflow") notebook 10's
    continuous-time runs. "edm" adds notebook 04's learned EDM teacher (on its data file). Configs as in those
    notebooks (fast mode too), so their cached runs are reused; the course's shipped runs unless ``retrain``."""
    fast = fast_mode()
    out: dict = {}
    if "cd" in methods:
        out["cd"] = train_or_load(toy_cd_config(), "nb07-toy-cd", progress=progress, retrain=retrain)
    if "pd" in methods:
        out["pd"] = pd_train_or_load(toy_pd_config(), "nb11-toy-pd", progress=progress)
    for kind in ("ct", "ict"):
        if kind in methods:
            out[kind] = _nb06_run(kind, fast)
    for kind in ("sct", "meanflow"):
        if kind in methods:
            out[kind] = train_or_load(get_preset(f"toy-{kind}"), f"nb10-toy-{kind}", progress=progress,
                                      retrain=retrain)
    if "edm" in methods:
        file_data = "file:" + str(toy_data_file().resolve())
        small = dict(TOY_SMALL, ema_decay=0.99) if fast else {}
        cfg = get_preset("toy-edm").override({"data": file_data, **small})  # notebook 04's: the preset on its data file
        out["edm"] = train_or_load(cfg, "nb04-edm", progress=progress)
    return out


def _nb06_run(kind: str, fast: bool):
    """Notebook 06's CT ("nb06-ct-adaptive") or iCT ("nb06-ict") run, with the learning curve it records."""
    from cmlearn.course.ct import train_with_curve
    from cmlearn.data.toys2d import preset

    steps = pick(15_000, 300)
    over = {"data": "eight_gaussians", "steps": steps, "checkpoint_every": max(steps // 15, 1)}
    if fast:
        over.update(TOY_SMALL, ema_decay=0.95)
        if kind == "ct":
            over["K"] = 15_000
    ref = preset("eight_gaussians").sample(pick(10_000, 2000), generator=torch.Generator().manual_seed(123))
    name = "nb06-ct-adaptive" if kind == "ct" else "nb06-ict"
    return train_with_curve(get_preset(f"toy-{kind}").override(over), name, ref=ref)[0]


def digits_runs(methods: Sequence[str] = ("edm", "cd", "pd", "ct", "ict"), *, progress: bool | None = False,
                retrain: bool = False) -> dict:
    """Notebook 08's digits runs (its presets and names; the shipped ones in full mode unless ``retrain``) and PD
    from the same EDM teacher ("pd", {steps: Run}; its config names the teacher's directory)."""
    edm = train_or_load(get_preset("digits-edm"), "digits-edm", progress=progress, retrain=retrain)
    out: dict = {"edm": edm}
    if "cd" in methods:
        out["cd"] = train_or_load(with_teacher(get_preset("digits-cd"), edm.path), "digits-cd", progress=progress,
                                  retrain=retrain)
    if "pd" in methods:
        out["pd"] = pd_train_or_load(digits_pd_config(edm.path), "nb11-digits-pd", progress=progress)
    for kind in ("ct", "ict"):
        if kind in methods:
            out[kind] = train_or_load(get_preset(f"digits-{kind}"), f"digits-{kind}", progress=progress,
                                      retrain=retrain)
    return out


def toy_pd_config() -> TrainConfig:
    """Notebook 11's toy PD: the toy-pd preset (the smoke-sized network in fast mode)."""
    return get_preset("toy-pd").override({"net_kwargs": TOY_SMALL["net_kwargs"]} if fast_mode() else {})


def digits_pd_config(teacher: str | Path) -> TrainConfig:
    """Notebook 11's digits PD: the digits-pd preset distilling the digits-edm run in ``teacher``."""
    return get_preset("digits-pd").override({"teacher": str(teacher)})


def pd_jobs(*, retrain: bool = False) -> dict:
    """Notebook 11's two PD trainings as ``side_by_side`` jobs, the configs ``toy_runs`` / ``digits_runs`` then
    load: the toy's (from the exact score) and the digits' (notebook 08's teacher first, in the same worker, when
    it is neither shipped, unless ``retrain``, nor cached)."""
    edm_cfg = get_preset("digits-edm")
    teacher = run_location(edm_cfg, "digits-edm", retrain=retrain)
    return {"toy PD": pd_job(toy_pd_config(), "nb11-toy-pd"),
            "digits teacher, then PD": chain(train_job(edm_cfg, "digits-edm", retrain=retrain),
                                             pd_job(digits_pd_config(teacher), "nb11-digits-pd"))}


def methods_for(runs: Mapping, *, samplers: Mapping[str, str] = SAMPLERS, cm_max_nfe: int = 8,
                exact=None) -> dict:
    """The labelled methods of the sweep (``cmlearn.train.nfe``) for the runs of ``toy_runs``/``digits_runs``:
    each sampler with the exact denoiser of ``exact`` (a distribution) and with the EDM run ``runs["edm"]``
    (where given), then PD, CD, CT, iCT, sCT and MeanFlow (Algorithm 1, or MeanFlow's own steps)."""
    methods = {}
    if exact is not None:
        methods.update({f"exact score, {label}": exact_method(exact, s) for label, s in samplers.items()})
    if "edm" in runs:
        methods.update({f"teacher, {label}": teacher_method(runs["edm"], s) for label, s in samplers.items()})
    if "pd" in runs:
        methods["PD"] = pd_method(runs["pd"])
    for key, label in CM_LABELS.items():
        if key in runs:
            methods[label] = cm_method(runs[key], max_nfe=cm_max_nfe)
    return methods


def plot_nfe(results: Mapping, metric: str, *, floor: float | None = None, ax=None, title: str = "",
             ylabel: str | None = None):
    """Quality against NFE on log-log axes, one line per method, the data-vs-data floor dotted."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.6, 4.4))
    for i, (label, rows) in enumerate(results.items()):
        if rows:
            nfes = sorted(rows)
            style = "s--" if label == "PD" or label in CM_LABELS.values() else "o-"
            ax.plot(nfes, [rows[k][metric] for k in nfes], style, ms=4, color=f"C{i}", label=label)
    if floor is not None:
        ax.axhline(floor, color="0.5", ls=":", label="floor: data vs data")
    ax.set(xscale="log", yscale="log", xlabel="NFE (network calls per sample)", ylabel=ylabel or metric,
           title=title)
    nfes = sorted({k for rows in results.values() for k in rows})
    ax.set_xticks(nfes, [str(k) for k in nfes])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    return fig


def nfe_table(results: Mapping, metric: str, *, fmt: str = "{:.4f}") -> str:
    """A markdown table: one row per method, one column per NFE, ``metric`` (blank where not measured), and the
    wall time per 10k samples at the largest NFE measured."""
    nfes = sorted({k for rows in results.values() for k in rows})
    lines = ["| method | " + " | ".join(f"NFE {k}" for k in nfes) + " | s / 10k samples (at NFE) |",
             "|---|" + "---|" * (len(nfes) + 1)]
    for label, rows in results.items():
        cells = [fmt.format(rows[k][metric]) if k in rows else "" for k in nfes]
        last = max(rows) if rows else None
        timing = f"{rows[last]['s_per_10k']:.2f} ({last})" if rows else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {timing} |")
    return "\n".join(lines)
