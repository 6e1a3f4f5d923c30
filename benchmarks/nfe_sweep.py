"""Quality against NFE, the comparison the paper's case rests on (Sec. 1 and 6): the EDM teacher with fast ODE
samplers (Euler = DDIM, Heun, DPM-Solver++(2M), UniPC), progressive distillation (PD) from the same teacher, and
the consistency models CD, CT and iCT, at 1, 2, 4, 8, 16 and 34 network calls per sample. Prints markdown tables
(quality, wall time per 10k samples) and the winner at each budget; writes a JSON and a log-log figure.

    python benchmarks/nfe_sweep.py                          # full mode, eight Gaussians and digits
    python benchmarks/nfe_sweep.py --part toy --methods edm,cd,pd
    CMLEARN_FAST=1 python benchmarks/nfe_sweep.py           # smoke-sized runs (numbers not meaningful)

On the toy the teacher is the mixture's exact score (a perfect network), as for the toy-cd preset; PD and CD
distill that same exact denoiser. On digits it is notebook 08's EDM teacher, which CD and PD distill.
Runs are trained or loaded exactly as notebooks 06, 07, 08 and 11 do (``cmlearn.course.nfe``), in their cache
(``--cache``, default notebooks/runs): a run a notebook already trained is reused, and the other way round.
Toys: sliced W2 (``--n`` samples, 500 projections) and energy distance (the first 3000) to fresh data, with the
data-vs-data floor. Digits: FD-digits of ``--n-digits`` samples against the test split, with the floor of as many
real training digits.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
NFES = [1, 2, 4, 8, 16, 34]


def toy_part(methods: list[str], n: int) -> dict:
    from cmlearn.course.nfe import methods_for, toy_runs
    from cmlearn.data.toys2d import preset
    from cmlearn.train.nfe import point_metrics, sweep

    runs = toy_runs(methods)
    dist = preset("eight_gaussians")
    ref = dist.sample(n, generator=torch.Generator().manual_seed(123))
    metrics = point_metrics(ref)
    fresh = dist.sample(n, generator=torch.Generator().manual_seed(7))
    floor = {k: fn(fresh) for k, fn in metrics.items()}
    results = sweep(methods_for(runs, exact=dist), NFES, metrics, n=n, seed=0)
    return {"results": results, "floor": floor, "n": n}


def digits_part(methods: list[str], n: int) -> dict:
    from cmlearn.course.nfe import digits_runs, methods_for
    from cmlearn.data.digits import digits_tensor
    from cmlearn.train.nfe import digits_metrics, sweep

    runs = digits_runs(methods)
    metrics = digits_metrics()
    train_x = digits_tensor("train")
    real = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[:n]]
    floor = {"fd": metrics["fd"](real)}
    results = sweep(methods_for(runs), NFES, metrics, n=n, seed=0)
    return {"results": results, "floor": floor, "n": n}


def report(name: str, part: dict, metric: str) -> None:
    from cmlearn.course.nfe import nfe_table
    from cmlearn.train.nfe import winners

    floor = part["floor"][metric]
    print(f"\n## {name}: {metric} (lower is better; floor, data vs data: {floor:.4f}), n = {part['n']}\n")
    print(nfe_table(part["results"], metric))
    print("\nwinner at each budget: " + ", ".join(f"NFE {k}: {lab} ({v:.4f})"
                                                 for k, (lab, v) in winners(part["results"], metric).items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["toy", "digits", "both"], default="both")
    p.add_argument("--methods", default="cd,pd,ct,ict,sct,meanflow",
                   help="runs to include: cd, pd, ct, ict, and on the toy sct and meanflow (notebook 10's); edm adds "
                   "notebook 04's learned toy teacher (the digits teacher is always there)")
    p.add_argument("--n", type=int, default=10_000, help="samples per toy measurement")
    p.add_argument("--n-digits", type=int, default=1000, help="samples per FD-digits measurement")
    p.add_argument("--cache", default=str(ROOT / "notebooks" / "runs"), help="the notebooks' run cache")
    p.add_argument("--json", default="", help="write the results here")
    p.add_argument("--fig", default="", help="write the log-log figure here (.png)")
    a = p.parse_args(argv)
    cache = Path(a.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    os.chdir(cache.parent)  # run directories and teacher paths keyed exactly as the notebooks key them
    os.environ["CMLEARN_CACHE"] = cache.name
    methods = [m for m in a.methods.split(",") if m]
    t0, out = time.perf_counter(), {}
    if a.part in ("toy", "both"):
        out["toy"] = toy_part(methods, a.n)
        report("eight Gaussians", out["toy"], "sw")
        report("eight Gaussians", out["toy"], "energy")
    if a.part in ("digits", "both"):
        out["digits"] = digits_part(methods, a.n_digits)
        report("digits", out["digits"], "fd")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s (training included when runs were not cached)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    if a.fig:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from cmlearn.course.nfe import plot_nfe

        panels = [(k, m) for k, m in (("toy", "sw"), ("toy", "energy"), ("digits", "fd")) if k in out]
        fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), squeeze=False)
        for ax, (k, m) in zip(axes[0], panels):
            plot_nfe(out[k]["results"], m, floor=out[k]["floor"][m], ax=ax, title=f"{k}: {m}")
        fig.tight_layout()
        fig.savefig(a.fig, dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
