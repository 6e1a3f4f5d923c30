"""Sequential runs against one batched ensemble (cmlearn.train.ensemble), side by side in one run: notebook 04's
N x solver grid of toy-cd (N = 6, 12, 18, 36, 72; Euler and Heun: 10 runs), at the full-mode network size (MLP
256 x 4, batch 512) and at the fast-mode size (MLP 128 x 3, batch 256).

    python benchmarks/ensemble_speed.py                 # 100 steps per run, 1 thread
    python benchmarks/ensemble_speed.py --threads 2 --steps 200

Prints run-steps per second both ways (one run-step = one optimizer step of one run) and their ratio, and the
machine's load average while it ran (other work on the machine slows both columns alike only roughly).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from cmlearn.train.ensemble import train_ensemble
from cmlearn.train.loop import train
from cmlearn.train.presets import get_preset

SIZES = {"full (MLP 256 x 4, batch 512)": {"net_kwargs": {"width": 256, "depth": 4, "emb_dim": 64},
                                           "batch_size": 512},
         "fast (MLP 128 x 3, batch 256)": {"net_kwargs": {"width": 128, "depth": 3, "emb_dim": 32},
                                           "batch_size": 256}}


def grid(size: dict, *, steps: int) -> list:
    """Notebook 04's N x solver ablation configs at ``size``, ``steps`` steps, one checkpoint at the end."""
    base = get_preset("toy-cd").override({**size, "steps": steps, "checkpoint_every": steps, "log_every": steps,
                                          "data": "eight_gaussians"})
    return [base.override({"N": N, "solver": s}) for s in ("euler", "heun") for N in (6, 12, 18, 36, 72)]


def compare(cfgs: list, *, rounds: int) -> dict:
    """Best-of-``rounds`` run-steps/s of the runs one after another and of one ensemble."""
    seq, ens = [], []
    steps = cfgs[0].steps * len(cfgs)
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for i, cfg in enumerate(cfgs):
                train(cfg, Path(tmp) / f"run{i}", progress=False)
            seq.append(steps / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            train_ensemble(cfgs, [Path(tmp) / f"ens{i}" for i in range(len(cfgs))], progress=False)
            ens.append(steps / (time.perf_counter() - t0))
    return {"sequential": max(seq), "ensemble": max(ens), "ratio": max(ens) / max(seq)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100, help="steps per run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.steps < 1 or a.rounds < 1 or a.threads < 1:
        raise SystemExit(f"--steps, --rounds and --threads must be >= 1, got {a.steps}, {a.rounds}, {a.threads}")
    torch.set_num_threads(a.threads)
    load0, results = os.getloadavg()[0], {}
    print(f"notebook 04's N x solver grid: 10 toy-cd runs of {a.steps} steps, {a.threads} thread(s), "
          f"best of {a.rounds}")
    print("| size | sequential run-steps/s | ensemble run-steps/s | ensemble / sequential |\n|---|---:|---:|---:|")
    for name, size in SIZES.items():
        r = results[name] = compare(grid(size, steps=a.steps), rounds=a.rounds)
        print(f"| {name} | {r['sequential']:.1f} | {r['ensemble']:.1f} | {r['ratio']:.2f} |", flush=True)
    print(f"load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    return results


if __name__ == "__main__":
    main()
