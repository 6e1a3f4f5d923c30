"""The run cache every notebook uses: "train or load" a config into CACHE/NAME-HASH (UvA-notebook style).

A run directory is keyed by a hash of the whole config, so runs with different settings never share one; a
finished run is loaded, an unfinished one resumes exactly from its last checkpoint. Runs the course ships
(``data/pretrained/PRESET-HASH``, rebuilt by ``scripts/build_pretrained.py``) are loaded when their hash matches,
unless ``retrain=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from cmlearn.train.checkpoint import load_checkpoint
from cmlearn.train.config import ADDED_KEYS, TrainConfig
from cmlearn.train.runs import Run, load_run


def cache_dir() -> Path:
    """Where notebooks keep their runs: ``CMLEARN_CACHE`` (default ``runs/``)."""
    return Path(os.environ.get("CMLEARN_CACHE", "runs"))


FORMAT = 2
"""The run-directory format; bumped when checkpoints change (2: they store the sample shape), so a cache written
by an older cmlearn is never loaded, only retrained beside it."""


def config_key(cfg: TrainConfig) -> str:
    """A short hash of a config (and the run format): runs with different settings never share a directory.
    Keys added after runs were cached or shipped (``ADDED_KEYS``) enter the hash only when not at their default,
    so adding one keeps every existing run's hash."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in ADDED_KEYS or v != ADDED_KEYS[k]}
    blob = json.dumps({"format": FORMAT, **d}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


PRETRAINED = Path(__file__).resolve().parents[2] / "data" / "pretrained"


def pretrained_dir(cfg: TrainConfig) -> Path | None:
    """The shipped finished run of exactly ``cfg`` (same config hash), or None."""
    hits = sorted(PRETRAINED.glob(f"*-{config_key(cfg)}")) if PRETRAINED.is_dir() else []
    return hits[0] if hits else None


def shipped_run(preset: str) -> Run:
    """The shipped run of PRESET's full-mode config (``data/pretrained/PRESET-HASH``), loaded in fast mode too,
    so a notebook can show a full-size model without training it. FileNotFoundError (naming what is shipped) when
    none matches the current preset, ValueError for an unknown preset."""
    from cmlearn.runtime import full_mode
    from cmlearn.train.presets import get_preset

    with full_mode():
        cfg = get_preset(preset)
    path = pretrained_dir(cfg)
    if path is None:
        have = sorted(p.name for p in PRETRAINED.glob("*-*")) if PRETRAINED.is_dir() else []
        raise FileNotFoundError(f"no shipped run of the current {preset!r} preset (hash {config_key(cfg)}) in "
                                f"{PRETRAINED}; shipped: {have}; rebuild: python scripts/build_pretrained.py {preset}")
    return load_run(path)


def with_teacher(cfg: TrainConfig, teacher_dir: str | Path) -> TrainConfig:
    """``cfg`` distilling the finished run in ``teacher_dir``: its path as ``teacher``, except when ``teacher_dir`` is
    the shipped run of the preset ``cfg.teacher`` names (``runs/digits-edm``: ``digits-edm``) and the course also
    ships the run of ``cfg`` itself (built from that teacher under that path), so that ``train_or_load`` loads that
    run instead of distilling the teacher again."""
    from cmlearn.train.presets import PRESETS, get_preset

    teacher_dir, own = Path(teacher_dir), Path(cfg.teacher).name  # digits-cd's teacher is runs/digits-edm
    shipped_teacher = pretrained_dir(get_preset(own)) if own in PRESETS else None
    if shipped_teacher is not None and teacher_dir.resolve() == shipped_teacher.resolve() and pretrained_dir(cfg):
        return cfg
    return cfg.override({"teacher": str(teacher_dir)})


def run_location(cfg: TrainConfig, name: str, *, cache: str | Path | None = None, retrain: bool = False) -> Path:
    """Where ``train_or_load(cfg, name, cache=cache, retrain=retrain)`` finds or trains the run: the shipped run of
    ``cfg`` (unless ``retrain``), else CACHE/NAME-HASH."""
    return (None if retrain else pretrained_dir(cfg)) or run_dir(cfg, name, cache=cache)


def run_dir(cfg: TrainConfig, name: str, *, cache: str | Path | None = None) -> Path:
    """CACHE/NAME-HASH; ``name`` must be a plain directory name (ValueError otherwise)."""
    if not name or "/" in name:
        raise ValueError(f"name must be a non-empty directory name, got {name!r}")
    return Path(cache if cache is not None else cache_dir()) / f"{name}-{config_key(cfg)}"


def checkpoint_step(path: str | Path) -> int | None:
    """The step of RUN_DIR's latest checkpoint, or None without one (read memory-mapped: no model is built and no
    weights are read)."""
    ckpt = Path(path) / "checkpoints" / "latest.pt"
    return load_checkpoint(ckpt, mmap=True)["step"] if ckpt.exists() else None


def is_finished(path: str | Path, steps: int, needs: tuple[str, ...] = ()) -> bool:
    """A run directory whose checkpoint reached ``steps``, with the files ``needs`` beside it."""
    step = checkpoint_step(path)
    return step is not None and step >= steps and all((Path(path) / f).exists() for f in needs)


def train_or_load(cfg: TrainConfig, name: str, *, cache: str | Path | None = None, progress: bool | None = None,
                  on_checkpoint: Callable | None = None, needs: tuple[str, ...] = (), retrain: bool = False) -> Run:
    """Load the shipped run of exactly ``cfg`` (unless ``retrain``), else CACHE/NAME-HASH if it holds a finished
    run of ``cfg`` (and the files ``needs`` beside it); else train it there, resuming from its last checkpoint.
    ``on_checkpoint(step, ema)`` is passed to ``train``."""
    from cmlearn.train.loop import train

    shipped = None if retrain or needs else pretrained_dir(cfg)
    if shipped is not None:
        print(f"loaded the shipped run {shipped.name} (to train it yourself: `retrain = True` in a notebook's "
              "parameters cell, retrain=True in Python, `cmlearn demo --train` for the demo's run)")
        return load_run(shipped)
    out = run_dir(cfg, name, cache=cache)
    if is_finished(out, cfg.steps, needs):
        return load_run(out)
    resume = all((out / f).exists() for f in needs)  # a finished run lacking a needed file trains afresh
    train(cfg, out, resume=resume, progress=progress, on_checkpoint=on_checkpoint)
    return load_run(out)
