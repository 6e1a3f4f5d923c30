"""Runs one after another (all threads on each) against the same runs side by side (``cmlearn.train.parallel``:
one process and one thread each), measured in one run: two full-size toy runs (`toy-ct` and `toy-ict`, MLP 256 x
4, batch 512), as notebook 06 trains them.

    python benchmarks/side_by_side.py                   # 1500 steps per run
    python benchmarks/side_by_side.py --steps 3000 --rounds 2

Prints run-steps per second both ways (one run-step = one optimizer step of one run), their ratio, and the
machine's load average while it ran (other work on the machine slows both columns, not always alike). The
side-by-side column includes starting the worker processes (a few seconds), as a notebook pays it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from cmlearn.train.cache import train_or_load
from cmlearn.train.parallel import default_workers, side_by_side, train_job
from cmlearn.train.presets import get_preset


def configs(steps: int) -> dict:
    over = {"steps": steps, "checkpoint_every": steps, "log_every": max(steps // 10, 1), "data": "eight_gaussians"}
    return {name: get_preset(name).override(over) for name in ("toy-ct", "toy-ict")}


def one_round(cfgs: dict, threads: int, workers: int) -> tuple[float, float]:
    """Seconds for the runs one after another (``threads`` threads) and side by side (``workers`` processes)."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        for name, cfg in cfgs.items():
            train_or_load(cfg, name, cache=Path(tmp) / "seq", progress=False)
        seq = time.perf_counter() - t0
        jobs = {name: train_job(cfg, name, cache=Path(tmp) / "side") for name, cfg in cfgs.items()}
        t0 = time.perf_counter()
        side_by_side(jobs, workers=workers, threads=max(threads // workers, 1), progress=False)
        side = time.perf_counter() - t0
    return seq, side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    cores = default_workers(64)
    cfgs = configs(args.steps)
    workers = min(cores, len(cfgs))
    print(f"{len(cfgs)} runs of {args.steps} steps; {cores} cores: one after another with {cores} threads each, "
          f"against {workers} processes side by side")
    best_seq = best_side = float("inf")
    for r in range(args.rounds):
        seq, side = one_round(cfgs, cores, workers)
        best_seq, best_side = min(best_seq, seq), min(best_side, side)
        print(f"  round {r + 1}: one after another {seq:.1f} s, side by side {side:.1f} s "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    run_steps = len(cfgs) * args.steps
    print(f"run-steps/s: one after another {run_steps / best_seq:.2f}, side by side {run_steps / best_side:.2f} "
          f"-> {best_seq / best_side:.2f}x (best of {args.rounds})")


if __name__ == "__main__":
    main()
