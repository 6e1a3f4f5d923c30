"""Where full-mode time goes in the training notebooks (04, 06, 08): every run they train, its full-mode steps, its
CPU cost per step measured over a short stretch of the real run (1 thread), and the CPU minutes the whole run would
take; summed per notebook. On a free core the wall time is about the CPU time. On a busy machine the CPU time per
step grows too (shared caches and cores: toy-cd took 21 ms/step at load 0.6 and 42 ms at load 9), so the printed
load average says how to read it.

    python benchmarks/training_budget.py                  # 120 steps per toy run, 12 per digits run
    python benchmarks/training_budget.py --toy-steps 300 --digits-steps 30

Each short run includes its setup (data, networks, teacher), so the per-step cost is an upper bound. The rest of a
notebook (sampling, metrics, the Theorem 2 checks of 06) is not counted: ``benchmarks/course_time.py`` times whole
notebooks.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.pop("CMLEARN_FAST", None)  # full-mode presets: cmlearn.pick reads the variable at call time

import torch  # noqa: E402

from cmlearn.train.loop import train  # noqa: E402
from cmlearn.train.presets import get_preset  # noqa: E402


def cpu_per_step(cfg, out: Path, *, steps: int) -> float:
    """CPU seconds per step of ``cfg`` over ``steps`` steps (setup included), curriculum length kept at full K."""
    over = {"steps": steps, "checkpoint_every": steps, "log_every": steps}
    if cfg.kind in ("ct", "ict"):
        over["K"] = cfg.K or cfg.steps
    short = cfg.override(over)
    t0 = time.process_time()
    train(short, out, progress=False, resume=False)
    return (time.process_time() - t0) / steps


def runs(tmp: Path, *, toy: int, digits: int):
    """(notebook, run, full-mode steps, how many such runs, CPU s/step) for every training run of 04, 06, 08."""
    cd = get_preset("toy-cd").override({"data": "eight_gaussians"})
    edm = get_preset("toy-edm").override({"data": "eight_gaussians"})
    ct, ict = get_preset("toy-ct"), get_preset("toy-ict")
    rate = {"cd": cpu_per_step(cd, tmp / "cd", steps=toy), "edm": cpu_per_step(edm, tmp / "edm", steps=toy)}
    learned = cd.override({"teacher": str(tmp / "edm")})
    rate["cd-learned"] = cpu_per_step(learned, tmp / "cdl", steps=toy)
    rate["ct"], rate["ict"] = (cpu_per_step(c, tmp / c.preset, steps=toy) for c in (ct, ict))
    yield from [("04", "CD, exact teacher (toy-cd)", cd.steps, 1, rate["cd"]),
                ("04", "EDM teacher (toy-edm)", edm.steps, 1, rate["edm"]),
                ("04", "CD from the learned teacher", cd.steps, 1, rate["cd-learned"]),
                ("04", "ablations (d, N x solver, mu)", 2000, 15, rate["cd"]),
                ("06", "CT adaptive + fixed N = 6, 18, 80", ct.steps, 4, rate["ct"]),
                ("06", "iCT", ict.steps, 1, rate["ict"]),
                ("06", "iCT on a point file", 2000, 1, rate["ict"])]
    d_edm = get_preset("digits-edm")
    r_edm = cpu_per_step(d_edm, tmp / "d-edm", steps=digits)
    d_cd = get_preset("digits-cd").override({"teacher": str(tmp / "d-edm")})
    d_ct, d_ict = get_preset("digits-ct"), get_preset("digits-ict")
    yield from [("08", "EDM teacher (digits-edm)", d_edm.steps, 1, r_edm),
                ("08", "CD (digits-cd)", d_cd.steps, 1, cpu_per_step(d_cd, tmp / "d-cd", steps=digits)),
                ("08", "CT: digits-ct and the paper's recipe", d_ct.steps, 2,
                 cpu_per_step(d_ct, tmp / "d-ct", steps=digits)),
                ("08", "iCT (digits-ict)", d_ict.steps, 1, cpu_per_step(d_ict, tmp / "d-ict", steps=digits))]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--toy-steps", type=int, default=120)
    p.add_argument("--digits-steps", type=int, default=12)
    a = p.parse_args(argv)
    if a.toy_steps < 2 or a.digits_steps < 2:
        raise SystemExit(f"--toy-steps and --digits-steps must be >= 2, got {a.toy_steps}, {a.digits_steps}")
    torch.set_num_threads(1)
    load0, totals = os.getloadavg()[0], {}
    print("| notebook | run | steps | runs | CPU ms/step (1 thread) | CPU min |\n|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for nb, name, steps, count, per_step in runs(Path(tmp), toy=a.toy_steps, digits=a.digits_steps):
            minutes = steps * count * per_step / 60
            totals[nb] = totals.get(nb, 0.0) + minutes
            print(f"| {nb} | {name} | {steps} | {count} | {1000 * per_step:.1f} | {minutes:.1f} |", flush=True)
    print("training CPU minutes per notebook (1 thread): "
          + ", ".join(f"{nb}: {m:.1f}" for nb, m in totals.items())
          + f"; load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    return totals


if __name__ == "__main__":
    main()
