"""The continuous-time toy presets against the issue's bar: 1-step sliced W2 <= 1.5x the exact-score Heun N = 18
sampler's, on the eight Gaussians (fresh data, 20k samples), within toy-ict's step count.

    python benchmarks/continuous_toys.py RUN_DIR [RUN_DIR ...]     # runs trained with `cmlearn train toy-sct` etc.
    python benchmarks/continuous_toys.py                           # train or load toy-sct and toy-meanflow (runs/)

Prints one markdown row per run: preset, steps (and toy-ict's), 1- and 2-step sliced W2, the exact Heun bar,
the ratio 1-step / bar and whether it meets 1.5x.
"""

from __future__ import annotations

import argparse
import os

import torch


def main() -> None:
    from cmlearn.train.cache import train_or_load
    from cmlearn.train.evaluate import evaluate_points
    from cmlearn.train.presets import get_preset
    from cmlearn.train.runs import load_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="run directories (default: train or load toy-sct and toy-meanflow)")
    ap.add_argument("--n", type=int, default=20_000)
    a = ap.parse_args()
    runs = [load_run(p) for p in a.runs] or [train_or_load(get_preset(p), p) for p in ("toy-sct", "toy-meanflow")]
    ict_steps = get_preset("toy-ict").steps
    print("| preset | steps (toy-ict) | SW 1 step | SW 2 steps | exact Heun N=18 | 1 step / Heun | <= 1.5x |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        res = evaluate_points(run, n=a.n, seed=0)
        ratio = res["sw_1step"] / res["sw_exact_heun18"]
        print(f"| {run.cfg.preset} | {run.step} ({ict_steps}) | {res['sw_1step']:.4f} | {res['sw_2step']:.4f} | "
              f"{res['sw_exact_heun18']:.4f} | {ratio:.2f} | {'yes' if ratio <= 1.5 else 'no'} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    main()
