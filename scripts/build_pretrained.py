"""Rebuild the runs the course ships in data/pretrained/ (full-mode presets; minutes of CPU each).

    python scripts/build_pretrained.py toy-cd          # one preset
    python scripts/build_pretrained.py                 # all of SHIPPED

Each run is trained with ``cmlearn.train.loop.train`` from its preset exactly as a student would, then slimmed to
what ``load_run`` needs (config, EMA weights, step, shape: no optimizer or target), and evaluated; the figure the
README quotes is printed and stored in RUN_DIR/evaluation.json (a test checks it reproduces).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

SHIPPED = ("toy-cd",)


def build(name: str) -> Path:
    os.environ.pop("CMLEARN_FAST", None)  # shipped runs are full-mode runs
    from cmlearn.train.cache import PRETRAINED, config_key
    from cmlearn.train.checkpoint import load_checkpoint, save_checkpoint
    from cmlearn.train.evaluate import evaluate_points, write_evaluation
    from cmlearn.train.loop import train
    from cmlearn.train.presets import get_preset
    from cmlearn.train.runs import load_run

    cfg = get_preset(name)
    out = PRETRAINED / f"{name}-{config_key(cfg)}"
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = train(cfg, Path(tmp) / name, resume=False)
        state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
        slim = {"step": state["step"], "model": state["ema"], "ema": state["ema"], "shape": state["shape"],
                "config": state["config"]}
        shutil.rmtree(out, ignore_errors=True)
        save_checkpoint(slim, out / "checkpoints" / "latest.pt")
        shutil.copy(run_dir / "config.json", out / "config.json")
        shutil.copy(run_dir / "metrics.jsonl", out / "metrics.jsonl")
    res = evaluate_points(load_run(out), n=20_000, seed=0)
    write_evaluation(out, res)
    print(f"{out}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.items() if k.startswith("sw_")))
    return out


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    for preset in sys.argv[1:] or SHIPPED:
        build(preset)
