"""Rebuild the runs the course ships in data/pretrained/ (full-mode presets; minutes of CPU each).

    python scripts/build_pretrained.py toy-cd          # one preset
    python scripts/build_pretrained.py                 # all of SHIPPED

Each run is trained with ``cmlearn.train.loop.train`` from its preset exactly as a student would, then slimmed to
what ``load_run`` needs (config, EMA weights, step, shape: no optimizer or target), and evaluated; the figure the
README quotes is printed and stored in RUN_DIR/evaluation.json (a test checks it reproduces). Runs keep their
weights in float16 (half the bytes; ``load_run`` copies them into the float32 network, and the stored evaluation is
of those weights); the shipped ``toy-cd`` predates that and is float32. ``digits-cd`` distills its preset's
teacher path ``runs/digits-edm``: that teacher is trained first, in a temporary working directory, and shipped as
``digits-edm`` beside it (its float32 weights distilled, their float16 rounding shipped).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

SHIPPED = ("toy-cd", "toy-sct", "toy-meanflow", "digits-cd", "digits-ct", "digits-ict", "digits-sct", "digits-meanflow")
"""``digits-cd`` ships ``digits-edm``, the teacher it distilled, with it."""


def ship(run_dir: Path) -> Path:
    """Slim the finished run RUN_DIR into data/pretrained/PRESET-HASH, evaluate it there and store the result."""
    from cmlearn.train.cache import PRETRAINED, config_key
    from cmlearn.train.checkpoint import load_checkpoint, save_checkpoint
    from cmlearn.train.config import TrainConfig
    from cmlearn.train.evaluate import evaluate_digits, evaluate_points, write_evaluation
    from cmlearn.train.runs import load_run

    cfg = TrainConfig.load(run_dir / "config.json")
    out = PRETRAINED / f"{cfg.preset}-{config_key(cfg)}"
    digits = cfg.data == "digits"
    state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    ema = {k: v.half() if v.is_floating_point() else v for k, v in state["ema"].items()}
    shutil.rmtree(out, ignore_errors=True)
    save_checkpoint({"step": state["step"], "model": ema, "ema": ema, "shape": state["shape"],
                     "config": state["config"]}, out / "checkpoints" / "latest.pt")
    shutil.copy(run_dir / "config.json", out / "config.json")
    shutil.copy(run_dir / "metrics.jsonl", out / "metrics.jsonl")
    run = load_run(out)
    res = evaluate_digits(run, n=1000, seed=0) if digits else evaluate_points(run, n=20_000, seed=0)
    write_evaluation(out, res)
    print(f"{out}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.items() if k[:3] in ("sw_", "fd_")))
    return out


def build(name: str) -> Path:
    os.environ.pop("CMLEARN_FAST", None)  # shipped runs are full-mode runs
    from cmlearn.train.loop import train
    from cmlearn.train.presets import get_preset

    student = name.replace("-edm", "-cd")
    if name.endswith("-edm") and student in SHIPPED and Path(get_preset(student).teacher).name == name:
        raise SystemExit(f"{name} ships with {student}, the run distilled from it: "
                         f"python scripts/build_pretrained.py {student}")  # one teacher for the shipped CD
    cfg = get_preset(name)
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # a relative teacher path in the preset (runs/digits-edm) resolves in here
        try:
            if cfg.kind == "cd" and cfg.teacher not in ("exact", "empirical"):
                teacher = train(get_preset(name.replace("-cd", "-edm")), Path(cfg.teacher), resume=False)
                ship(teacher)
            return ship(train(cfg, Path(tmp) / name, resume=False))
        finally:
            os.chdir(here)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    for preset in sys.argv[1:] or SHIPPED:
        build(preset)
