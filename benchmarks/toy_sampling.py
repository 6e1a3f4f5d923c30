"""Toy benchmark, one run, side by side: samplers (NFE, wall time per 10k samples, sliced W2 to fresh data)
and the CD training loop of cmlearn against a bare PyTorch loop doing the same math; prints markdown tables.

    python benchmarks/toy_sampling.py                 # full presets (trains 3 runs from the command line)
    CMLEARN_FAST=1 python benchmarks/toy_sampling.py  # smoke-sized runs (numbers not meaningful)
    python benchmarks/toy_sampling.py --reuse         # reuse the runs in --out if they are there

Samplers: consistency distillation (toy-cd, exact-score teacher) with 1 and 2 steps; the exact-score Heun
sampler on the N = 18 grid (34 NFE, the teacher's); torchdiffeq dopri5 on the exact score; a learned EDM
teacher's Heun N = 18 sampler (a network of the same size as the CD model, for a like-for-like wall time).
Acceptance figures measured along the way: full-mode `cmlearn train toy-cd` wall time; CD through a learned
EDM teacher, trained from the command line on a --data file of 20k samples, against the exact-score Heun
distance.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cmlearn.core.parameterization import ConsistencyFunction
from cmlearn.core.pfode import reference_solve
from cmlearn.core.sampling import default_taus, heun_sample, prior_noise, sample
from cmlearn.core.schedules import karras_sigmas
from cmlearn.core.solvers import CountedCalls
from cmlearn.data.toys2d import preset
from cmlearn.metrics import sliced_wasserstein
from cmlearn.nets.mlp import MLP
from cmlearn.runtime import fast_mode, pick
from cmlearn.train.config import TrainConfig
from cmlearn.train.evaluate import generate
from cmlearn.train.loop import learning_rate, train
from cmlearn.train.presets import get_preset
from cmlearn.train.runs import load_run

# ---------------------------------------------------------------- command line runs


def cli(args: list[str], *, threads: int) -> float:
    """Run the ``cmlearn`` console script; returns its wall time in seconds (raises on a non-zero exit)."""
    script = Path(sys.executable).with_name("cmlearn")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run([str(script), *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cmlearn {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def trained(out: Path, args: list[str], *, reuse: bool, threads: int) -> float | None:
    """Train with the command line into ``out`` (unless ``reuse`` and a finished run is there): wall time."""
    if reuse and (out / "checkpoints" / "latest.pt").exists():
        return None
    shutil.rmtree(out, ignore_errors=True)
    return cli(["train", *args, "--out", str(out), "--no-resume"], threads=threads)


# ---------------------------------------------------------------- samplers


def timed(fn, *, reps: int = 3) -> tuple[float, torch.Tensor]:
    """Median wall time of ``fn()`` over ``reps`` calls, and its last output."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def sampler_rows(cd_model, edm_model, dist, *, n_eval: int, seed: int) -> list[dict]:
    """NFE, seconds per 10k samples and sliced W2 (``n_eval`` samples vs fresh data) for each sampler."""
    gen = torch.Generator().manual_seed(seed)
    ref = dist.sample(n_eval, generator=gen)
    x_T = 80.0 * torch.randn(n_eval, 2, generator=gen, dtype=torch.float64)
    x10 = x_T[:10_000]
    rows = []

    def add(name, nfe, make):  # make(x_T) -> samples; timed on 10k, measured on n_eval
        with torch.no_grad():
            sec, _ = timed(lambda: make(x10))
            x = make(x_T)
        rows.append({"sampler": name, "NFE": nfe, "s_per_10k": sec * 10_000 / len(x10),
                     "sw": sliced_wasserstein(x, ref, n_projections=1000)})

    for steps in (1, 2):
        taus = default_taus(steps)
        def cd(x, taus=taus):
            return sample(cd_model, x.float(), taus, generator=torch.Generator().manual_seed(1))

        add(f"CD, {steps} step{'s' * (steps > 1)}", steps, cd)
    heun_nfe = 2 * (18 - 1)
    add("exact score, Heun N=18", heun_nfe, lambda x: heun_sample(dist.denoiser, x, N=18))
    counter = CountedCalls(dist.score)
    reference_solve(x10, 80.0, 0.002, score=counter, rtol=1e-5, atol=1e-5)
    nfe = counter.calls  # on 10k samples (the adaptive steps are chosen for the whole batch)
    add("exact score, dopri5 (tol 1e-5)", nfe,
        lambda x: reference_solve(x, 80.0, 0.002, score=dist.score, rtol=1e-5, atol=1e-5))
    add("learned EDM teacher, Heun N=18", heun_nfe, lambda x: heun_sample(edm_model, x.float(), N=18))
    floor = sliced_wasserstein(dist.sample(n_eval, generator=gen), ref, n_projections=1000)
    rows.append({"sampler": "noise floor (fresh data vs fresh data)", "NFE": None, "s_per_10k": None,
                 "sw": floor})
    return rows


# ---------------------------------------------------------------- training loop: cmlearn vs bare PyTorch


def cmlearn_steps_per_s(cfg: TrainConfig, out: Path) -> float:
    """Steps/s of cmlearn.train.loop.train from its own metrics log (the first interval, warm-up, left out)."""
    shutil.rmtree(out, ignore_errors=True)
    train(cfg, out, resume=False, progress=False)
    recs = [json.loads(line) for line in open(out / "metrics.jsonl")][1:]
    return sum(cfg.log_every for _ in recs) / sum(cfg.log_every / r["steps_per_s"] for r in recs)


def bare_steps_per_s(cfg: TrainConfig) -> float:
    """The same CD step written out in plain PyTorch: mixture batch, Heun teacher step with the exact
    denoiser, squared l2 between online and target outputs, RAdam with the same cosine lr, target EMA and
    eval EMA."""
    dist = preset(cfg.data)
    torch.manual_seed(cfg.seed)
    model = ConsistencyFunction(MLP(2, **cfg.net_kwargs), sigma_data=cfg.sigma_data, eps=cfg.eps)
    target = ConsistencyFunction(MLP(2, **cfg.net_kwargs), sigma_data=cfg.sigma_data, eps=cfg.eps)
    ema = ConsistencyFunction(MLP(2, **cfg.net_kwargs), sigma_data=cfg.sigma_data, eps=cfg.eps)
    for copy in (target, ema):
        copy.load_state_dict(model.state_dict())
        copy.requires_grad_(False)
    opt = torch.optim.RAdam(model.parameters(), lr=cfg.lr)
    ts = karras_sigmas(cfg.N, eps=cfg.eps, T=cfg.T, rho=cfg.rho).float()
    gen = torch.Generator().manual_seed(cfg.seed)

    def D(x, t):
        return dist.denoiser(x.double(), t.double()).float()

    t0 = None
    for step in range(cfg.steps):
        if step == cfg.log_every:  # leave out the same warm-up as for cmlearn's loop
            t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        x0 = dist.sample(cfg.batch_size, generator=gen).float()
        i = torch.randint(cfg.N - 1, (cfg.batch_size,), generator=gen)
        t_cur, t_next = ts[i], ts[i + 1]
        z = torch.randn(x0.shape, generator=gen)
        x_next = x0 + t_next[:, None] * z
        with torch.no_grad():
            dt = (t_cur - t_next)[:, None]
            d = (x_next - D(x_next, t_next)) / t_next[:, None]
            x_pred = x_next + dt * d
            x_cur = x_next + dt * 0.5 * (d + (x_pred - D(x_pred, t_cur)) / t_cur[:, None])
            tgt = target(x_cur, t_cur)
        loss = (model(x_next, t_next) - tgt).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            params = list(model.parameters())
            torch._foreach_lerp_(list(target.parameters()), params, 1 - cfg.mu)
            torch._foreach_lerp_(list(ema.parameters()), params, 1 - cfg.ema_decay)
    return (cfg.steps - cfg.log_every) / (time.perf_counter() - t0)


def loop_comparison(out: Path, *, steps: int, rounds: int) -> dict:
    """Interleaved rounds (cmlearn, bare, cmlearn, bare, ...) on the toy-cd preset; medians, their ratio."""
    cfg = get_preset("toy-cd").override({"steps": steps, "log_every": max(1, steps // 8)})
    ours, bare = [], []
    for r in range(rounds):
        ours.append(cmlearn_steps_per_s(cfg, out / f"loop-{r}"))
        bare.append(bare_steps_per_s(cfg))
    return {"cmlearn": float(np.median(ours)), "bare": float(np.median(bare)), "ratio_rounds":
            [a / b for a, b in zip(ours, bare)], "ratio": float(np.median(ours) / np.median(bare)),
            "batch": cfg.batch_size, "steps": steps, "rounds": rounds}


# ---------------------------------------------------------------- main


def fmt(v, spec):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/bench-toy", help="where the benchmark's runs go")
    p.add_argument("--reuse", action="store_true", help="reuse finished runs in --out instead of retraining")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the command-line trainings")
    p.add_argument("--n-eval", type=int, default=20_000, help="samples per distance")
    p.add_argument("--loop-steps", type=int, default=pick(400, 60), help="steps per round, loop comparison")
    p.add_argument("--loop-rounds", type=int, default=pick(3, 2))
    p.add_argument("--edm-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides for the toy-edm teacher run (repeatable)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    dist = preset("eight_gaussians")
    res: dict = {"fast_mode": fast_mode(), "load_avg_start": os.getloadavg()}

    # 1. three command-line trainings: CD from the exact score; an EDM teacher and CD from it on a data file
    data_file = out / "eight_gaussians_20k.npy"
    np.save(data_file, dist.sample(20_000, generator=torch.Generator().manual_seed(2023)).numpy())
    res["train_s_cd_exact"] = trained(out / "cd-exact", ["toy-cd"], reuse=a.reuse, threads=a.threads)
    res["edm_overrides"] = a.edm_set
    res["train_s_edm"] = trained(out / "edm-file", ["toy-edm", "--data", str(data_file), *a.edm_set],
                                 reuse=a.reuse, threads=a.threads)
    res["train_s_cd_learned"] = trained(out / "cd-learned", ["toy-cd", "--data", str(data_file), "--teacher",
                                                             str(out / "edm-file")], reuse=a.reuse,
                                        threads=a.threads)
    cd, edm, cd_learned = (load_run(out / n) for n in ("cd-exact", "edm-file", "cd-learned"))

    # 2. samplers side by side
    rows = sampler_rows(cd.model, edm.model, dist, n_eval=a.n_eval, seed=7)
    res["samplers"] = rows
    gen = torch.Generator().manual_seed(8)
    ref = dist.sample(a.n_eval, generator=gen)
    ref_file = torch.from_numpy(np.load(data_file))
    x_learned = generate(cd_learned, a.n_eval, steps=1, generator=gen)
    x_heun = heun_sample(dist.denoiser, prior_noise(a.n_eval, (2,), generator=gen, dtype=torch.float64), N=18)
    res["learned_teacher"] = {
        "sw_cd_1step": sliced_wasserstein(x_learned, ref, n_projections=1000),
        "sw_exact_heun18": sliced_wasserstein(x_heun, ref, n_projections=1000),
        "sw_cd_1step_vs_file": sliced_wasserstein(x_learned, ref_file, n_projections=1000),
        "sw_exact_heun18_vs_file": sliced_wasserstein(x_heun, ref_file, n_projections=1000)}
    lt = res["learned_teacher"]
    lt["ratio"] = lt["sw_cd_1step"] / lt["sw_exact_heun18"]
    lt["ratio_vs_file"] = lt["sw_cd_1step_vs_file"] / lt["sw_exact_heun18_vs_file"]

    # 3. the training loop against a bare loop, interleaved
    res["loop"] = loop_comparison(out, steps=a.loop_steps, rounds=a.loop_rounds)
    res["load_avg_end"] = os.getloadavg()

    # ---- report
    print(f"\n## Samplers on eight_gaussians ({a.n_eval} samples per distance, 1 CPU thread)\n")
    print("| sampler | NFE | wall time per 10k samples | sliced W2 to fresh data |")
    print("|---|---:|---:|---:|")
    for r in rows:
        t = "-" if r["s_per_10k"] is None else f"{1000 * r['s_per_10k']:.1f} ms"
        print(f"| {r['sampler']} | {fmt(r['NFE'], 'd')} | {t} | {r['sw']:.4f} |")
    print("\n## Training\n")
    print("| measure | value |")
    print("|---|---:|")
    c = cd.cfg
    size = f"{c.steps} steps, batch {c.batch_size}"
    labels = (("train_s_cd_exact", f"`cmlearn train toy-cd` ({size}), wall time"),
              ("train_s_edm", "`cmlearn train toy-edm --data FILE`, wall time"),
              ("train_s_cd_learned", "`cmlearn train toy-cd --data FILE --teacher EDM_RUN`, wall time"))
    for key, label in labels:
        v = res[key]
        took = "reused" if v is None else f"{v / 60:.1f} min"
        print(f"| {label} ({a.threads} thread{'s' * (a.threads > 1)}) | {took} |")
    lp = res["loop"]
    med = f"1 thread, median of {lp['rounds']}"
    print(f"| CD steps/s, cmlearn.train.loop.train ({med}) | {lp['cmlearn']:.1f} |")
    print(f"| CD steps/s, bare PyTorch loop, same math ({med}) | {lp['bare']:.1f} |")
    print(f"| ratio cmlearn / bare (per round: {', '.join(f'{r:.2f}' for r in lp['ratio_rounds'])}) "
          f"| {lp['ratio']:.2f} |")
    extra = f", teacher overrides: {' '.join(a.edm_set)}" if a.edm_set else ""
    print(f"\n## CD through a learned EDM teacher (command line, --data file of 20k samples{extra})\n")
    print("| distance to | CD 1 step | exact-score Heun N=18 | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| fresh samples of the preset | {lt['sw_cd_1step']:.4f} | {lt['sw_exact_heun18']:.4f} "
          f"| {lt['ratio']:.2f} |")
    print(f"| the data file itself | {lt['sw_cd_1step_vs_file']:.4f} | {lt['sw_exact_heun18_vs_file']:.4f} "
          f"| {lt['ratio_vs_file']:.2f} |")
    print(f"\nload average: {res['load_avg_start'][0]:.1f} at start, {res['load_avg_end'][0]:.1f} at the end")
    (out / "results.json").write_text(json.dumps(res, indent=2))
    print(f"results written to {out / 'results.json'}")
    return res


if __name__ == "__main__":
    main()
