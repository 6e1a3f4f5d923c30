"""Toy quality at the exact teacher's level (issue 19): CD, CT, iCT and ECT against the exact-score Heun N = 18
sampler on 2D mixtures the presets never use, at 1 and 2 steps, in one run; prints a markdown table.

    python benchmarks/toy_quality.py                       # 3 mixtures x 2 seeds x 4 methods, the protocol below
    python benchmarks/toy_quality.py --seeds 0 --jobs 2    # one seed, two processes
    CMLEARN_FAST=1 python benchmarks/toy_quality.py --fast # smoke size (numbers not meaningful)
    python benchmarks/toy_quality.py --mixtures lopsided_triple --mode-weights RUN_DIR   # where the mass goes

Protocol (the issue's): 20k training points per mixture, saved as a --data file, so every method trains on the
same finite set; each method runs its preset with ``data`` and the keys of ``PROTOCOL`` (CD: 15k steps with the
teacher's Heun at N = 40, from a ``toy-edm`` run with the stable target trained on the same points, the "learned
teacher"; CT: the CT recipe; ECT (issue 13, no goal here): ``toy-ect`` from that same teacher run).
Quality: energy distance of ``n_eval`` samples to fresh data (mean of ``draws`` draws), divided by that of the
exact-score Heun N = 18 sampler (Karras et al. 2022's 2nd-order sampler on the mixture's exact denoiser; the bar
the paper's CD is measured against). The data-vs-data floor is the same ratio for fresh data. One draw's energy
distance varies by about half its mean at 4000 samples (exact Heun's: mean 8.6e-4, standard deviation 4.1e-4 to
5.1e-4 over 24 draws on each mixture), so every sampler is scored paired: draw i of exact Heun and of each run's
schedules starts from the same noise x_T and is compared with the same fresh data (``noise``), which cancels most
of that noise in the ratios (CD's standard error 0.11 unpaired, 0.03 paired); each ratio is printed with its
standard error, over 32 draws. "2 steps" uses the default schedule (``cmlearn.train.evaluate.run_taus``); "2 steps,
even" the old t^(1/rho)-even one, [T, 2.515]; "2 minus 1 step" is the per-draw difference with its standard error:
the test of "two steps no worse than one" (issue 19).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.parameterization import SIGMA_DATA
from cmlearn.core.sampling import heun_sample, prior_noise, sample
from cmlearn.core.schedules import karras_sigmas
from cmlearn.metrics import energy_distance
from cmlearn.runtime import pick
from cmlearn.train.cache import config_key
from cmlearn.train.config import TrainConfig
from cmlearn.train.evaluate import run_taus
from cmlearn.train.loop import train
from cmlearn.train.presets import get_preset
from cmlearn.train.runs import load_run

# ---------------------------------------------------------------- mixtures the presets never use


def lopsided_triple() -> GaussianMixture:
    """3 modes of very different weight (0.6 / 0.3 / 0.1) and spread (std 0.30 / 0.10 / 0.04)."""
    means = torch.tensor([[0.0, 0.0], [1.6, 0.9], [-1.1, 1.7]])
    return GaussianMixture(means, torch.tensor([0.30, 0.10, 0.04]) ** 2,
                           torch.tensor([0.6, 0.3, 0.1])).rescaled(SIGMA_DATA)


def grid25() -> GaussianMixture:
    """25 sharp equal-weight modes on a 5x5 grid (std 0.05 at spacing 1)."""
    means = torch.tensor([[float(i), float(j)] for i in range(5) for j in range(5)])
    return GaussianMixture(means, torch.full((25,), 0.05**2)).rescaled(SIGMA_DATA)


def skewed_ring() -> GaussianMixture:
    """7 elongated (full covariance, tangent 4x the radial std) modes on an ellipse, weights falling 2x per mode."""
    angles = [2 * math.pi * k / 7 for k in range(7)]
    means = torch.tensor([[1.5 * math.cos(a), 0.8 * math.sin(a)] for a in angles])
    covs = []
    for a in angles:
        u = torch.tensor([-math.sin(a), math.cos(a)])  # tangent
        v = torch.tensor([math.cos(a), math.sin(a)])
        covs.append(0.16**2 * torch.outer(u, u) + 0.04**2 * torch.outer(v, v))
    w = torch.tensor([0.5**k for k in range(7)])
    return GaussianMixture(means, torch.stack(covs), w / w.sum()).rescaled(SIGMA_DATA)


MIXTURES = {"lopsided_triple": lopsided_triple, "grid25": grid25, "skewed_ring": skewed_ring}
METHODS = ("cd", "ct", "ict", "ect")
ORDER = ("cd", "ict", "ct", "ect")  # the jobs' order: longest first, so that the workers finish together
TUNED = ("cd", "ect")  # the methods that start from a toy-edm run trained on the same points (CD's teacher, ECT's init)
PROTOCOL = {
    "edm": {"stable_target": "true", "stable_ref": "4096"},  # CD's learned teacher: toy-edm with the stable target
    "cd": {"steps": "15000", "N": "40"},  # the 15k steps (toy-cd: 6000, N = 18 from the exact score)
    "ct": {"stable_target": "true", "stable_ref": "4096", "s0": "10",  # the CT recipe; toy-ct stays Algorithm 3
           "net_kwargs": '{"width": 256, "depth": 4, "emb_dim": 64, "input_scale": 10}'},
}
"""What the table runs beside ``data`` and ``seed``, each method's preset with these keys (``--set`` wins): CD
for the issue's 15k steps from a teacher trained with the stable target (STF's own use: the EDM loss regresses on
the batch's posterior mean; on grid25 its Heun-18 1.05x exact against 1.10x, CD from it 1.14x against 1.19x-1.20x;
not in ``toy-edm``, where it doubles a step's cost and on eight Gaussians is no better), with the teacher's Heun
at N = 40 (Theorem 1: CD's fixed point is the teacher's Heun-N map, and on skewed_ring exact Heun-18 is far from
converged: at N = 18 CD reads 1.25x / 1.20x there, at 40 0.71x / 0.71x), and for CT the recipe of issue 19
(README), since ``toy-ct`` is kept as the paper's Algorithm 3 for notebook 06 (6.8x-24x here)."""

# ---------------------------------------------------------------- runs


def points_file(out: Path, name: str, n: int) -> Path:
    """``n`` training points of mixture ``name`` (fixed seed: every method and seed trains on the same set)."""
    path = out / f"{name}-{n}.npy"
    if not path.exists():
        x = MIXTURES[name]().sample(n, generator=torch.Generator().manual_seed(1234))
        np.save(path, x.float().numpy())
    return path


def config(method: str, data: str, seed: int, *, teacher: str = "", overrides: dict | None = None) -> TrainConfig:
    """The preset ``toy-METHOD`` on ``data`` with ``seed``; CD distils ``teacher`` (a toy-edm run), ECT starts from
    its weights."""
    cfg = get_preset(f"toy-{method}").override({"data": data, "seed": seed, **(overrides or {})})
    key = {"cd": "teacher", "ect": "init_from"}.get(method)
    return cfg.override({key: teacher}) if key else cfg


def trained(cfg: TrainConfig, out: Path, name: str) -> Path:
    """Train ``cfg`` into OUT/NAME-HASH unless a finished run is there; returns the run directory."""
    path = out / f"{name}-{config_key(cfg)}"
    if not ((path / "checkpoints" / "latest.pt").exists() and load_run(path).step >= cfg.steps):
        train(cfg, path, resume=True, progress=False)
    return path


# ---------------------------------------------------------------- scores


def draw_eds(make, ref_draws: list[torch.Tensor]) -> np.ndarray:
    """Energy distance of ``make(i)`` to the i-th fresh-data draw, one value per draw."""
    return np.array([energy_distance(make(i).double(), ref) for i, ref in enumerate(ref_draws)])


def noise(i: int) -> torch.Generator:
    """The generator of draw ``i``: every sampler (exact Heun and each run's schedules) starts draw i from the same
    x_T, and it is scored against the same fresh data, so ratios and differences are paired."""
    return torch.Generator().manual_seed(7_000 + i)


def ratio(eds: np.ndarray, heun: np.ndarray) -> tuple[float, float]:
    """mean(eds) / mean(heun) and its standard error (delta method for a ratio of means over paired draws:
    the standard error of mean(eds - r heun) / mean(heun))."""
    r = eds.mean() / heun.mean()
    return float(r), standard_error(eds - r * heun) / float(heun.mean())


def standard_error(x: np.ndarray) -> float:
    """Standard error of the mean of ``x`` (0 for a single draw)."""
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def references(name: str, *, n: int, draws: int) -> dict:
    """Fresh data draws, the exact Heun N = 18 energy distance (draw i from ``noise(i)``) and the data-vs-data floor
    of mixture ``name``."""
    dist = MIXTURES[name]()
    gen = torch.Generator().manual_seed(99)
    refs = [dist.sample(n, generator=gen) for _ in range(draws)]
    heun = draw_eds(lambda i: heun_sample(dist.denoiser, prior_noise(n, (2,), generator=noise(i)).double(), N=18),
                    refs)
    floor = draw_eds(lambda i: dist.sample(n, generator=gen), refs)
    return {"refs": refs, "heun_draws": heun, "heun": float(heun.mean()), "floor": float(floor.mean())}


def score_run(path: Path, ref: dict, *, n: int) -> dict:
    """Energy distance ratios to exact Heun-18 of a run: 1 step, 2 steps (default and even), each with its standard
    error (``se1``, ...), or the EDM's Heun. Paired (``noise``): ``d2`` is 2 steps minus 1 step, per draw, over
    exact Heun's mean, with its standard error ``sed2``."""
    run = load_run(path)
    if run.cfg.kind == "edm":
        eds = draw_eds(lambda i: heun_sample(run.model, prior_noise(n, (2,), generator=noise(i)), N=18), ref["refs"])
        return dict(zip(("heun18", "se_heun18"), ratio(eds, ref["heun_draws"])))
    plans = {"1": [run.cfg.T], "2": run_taus(run.cfg, 2),
             "2even": karras_sigmas(3, eps=run.cfg.eps, T=run.cfg.T).flip(0)[:-1].tolist()}
    res, eds = {}, {}
    for key, taus in plans.items():
        def make(i, taus=taus):
            gen = noise(i)
            return sample(run.model, prior_noise(n, (2,), sigma=taus[0], generator=gen), taus, generator=gen)
        eds[key] = draw_eds(make, ref["refs"])
        res[key], res[f"se{key}"] = ratio(eds[key], ref["heun_draws"])
    d = (eds["2"] - eds["1"]) / ref["heun"]
    res["d2"], res["sed2"] = float(d.mean()), standard_error(d)
    return res


def reference_job(args: tuple) -> dict:
    """``references`` of one mixture, computed once and shared by every job on it; runs in a worker."""
    name, n_eval, draws = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    return {**references(name, n=n_eval, draws=draws), "minutes": (time.perf_counter() - t0) / 60}


def teacher_job(args: tuple) -> dict:
    """The toy-edm run of (mixture, seed) that CD distils and ECT starts from, trained unless cached, and its
    Heun-18 ratio, both once for the two methods; runs in a worker."""
    name, seed, out, n_train, n_eval, ref, overrides = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = f"file:{points_file(out, name, n_train)}"
    path = trained(config("edm", data, seed, overrides=overrides.get("edm")), out, f"{name}-edm-s{seed}")
    return {"path": str(path), "heun18": score_run(path, ref, n=n_eval)["heun18"],
            "minutes": (time.perf_counter() - t0) / 60}


def job(args: tuple) -> dict:
    """One (mixture, seed, method): train (CD, ECT: from ``teacher``, the ``teacher_job`` result) and score against
    the mixture's ``references``; runs in a worker."""
    name, seed, method, out, n_train, n_eval, ref, teacher, overrides = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = f"file:{points_file(out, name, n_train)}"
    row = {"mixture": name, "seed": seed, "method": method, "floor": ref["floor"] / ref["heun"]}
    if teacher:
        row["teacher"] = teacher["heun18"]
    cfg = config(method, data, seed, teacher=teacher["path"] if teacher else "", overrides=overrides.get(method))
    row.update(score_run(trained(cfg, out, f"{name}-{method}-s{seed}"), ref, n=n_eval))
    row["minutes"] = (time.perf_counter() - t0) / 60
    return row


def mode_weights(path: Path, name: str, *, n: int = 4000, ts=(0.5, 2.0, 5.0, 20.0, 80.0)) -> None:
    """Print, per t, the mode weights of f(x_t, t) (nearest mean) beside those of the exact ODE solution from the
    same x_t, and at t = T the median distance of 1-step samples to their mode's mean beside the data's."""
    dist, run = MIXTURES[name](), load_run(path)
    gen, means = torch.Generator().manual_seed(0), dist.means

    def weights(x: torch.Tensor) -> list[str]:
        return [f"{w:.3f}" for w in torch.bincount(torch.cdist(x, means).argmin(1), minlength=len(means)) / len(x)]

    def radius(x: torch.Tensor) -> list[str]:
        k = torch.cdist(x, means).argmin(1)
        return [f"{float((x[k == i] - means[i]).norm(dim=1).median()):.3f}" for i in range(len(means))]

    print(f"{path}: true weights {[f'{w:.3f}' for w in dist.weights.tolist()]}")
    for t in ts:
        x_t = dist.sample(n, generator=gen) + t * torch.randn(n, 2, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            f = run.model(x_t.float(), torch.full((n,), t)).double()
        exact = heun_sample(dist.denoiser, x_t, N=40, T=t)
        print(f"t = {t:5.1f}: exact ODE {weights(exact)}, model {weights(f)}")
    with torch.no_grad():
        x1 = sample(run.model, prior_noise(n, (2,), sigma=run.cfg.T, generator=gen), [run.cfg.T]).double()
    print(f"median distance to the mode's mean: data {radius(dist.sample(n, generator=gen))}, 1 step {radius(x1)}")


# ---------------------------------------------------------------- the table

GOALS = {("ict", "1"): 1.5, ("ict", "2"): 1.2, ("ct", "1"): 2.5, ("cd", "1"): 1.2}
"""The issue's goals: ratio to exact Heun-18 at or below these."""


def fmt(rows: list[dict], key: str) -> str:
    """'a / b' over seeds of ``key``, to 2 decimals."""
    return " / ".join(f"{r[key]:.2f}" for r in rows if key in r) or "-"


def table(rows: list[dict]) -> str:
    """Markdown: one line per mixture and method, seeds side by side, the goal met or missed, and whether 2 steps
    are worse than 1 (the paired difference above 0; "significantly" when above 2 standard errors)."""
    lines = ["| mixture | method | 1 step | 2 steps (default) | 2 steps (even, old) | 2 minus 1 step, paired (se) | "
             "learned teacher Heun-18 | floor | goal met | standard error, 1 / 2 steps |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for name in dict.fromkeys(r["mixture"] for r in rows):
        for method in METHODS:
            sel = [r for r in rows if r["mixture"] == name and r["method"] == method]
            if not sel:
                continue
            goals = [(k, g) for (m, k), g in GOALS.items() if m == method]
            met = ("yes" if all(max(r[k] for r in sel) <= g for k, g in goals) else "no") if goals else "-"
            worse = [r for r in sel if r["d2"] > 0]
            note = "" if not worse else (" (2 steps significantly worse than 1)" if any(
                r["d2"] > 2 * r["sed2"] for r in worse) else " (2 steps worse than 1, within 2 se)")
            paired = " / ".join(f"{r['d2']:+.2f} ({r['sed2']:.2f})" for r in sel)
            lines.append(f"| {name} | {method} | {fmt(sel, '1')} | {fmt(sel, '2')} | {fmt(sel, '2even')} | {paired} | "
                         f"{fmt(sel, 'teacher')} | {sel[0]['floor']:.2f} | {met}{note} | "
                         f"{fmt(sel, 'se1')}, {fmt(sel, 'se2')} |")
    return "\n".join(lines)


def parse_overrides(items: list[str]) -> dict:
    """``METHOD:key=value`` strings -> {method: {key: value}} (method: edm, cd, ct, ict or ect)."""
    out: dict = {}
    for item in items:
        method, _, pair = item.partition(":")
        if method not in ("edm", *METHODS) or "=" not in pair:
            raise ValueError(f"--set wants METHOD:key=value with METHOD in edm/{'/'.join(METHODS)}, got {item!r}")
        key, value = pair.split("=", 1)
        if (method, key) in (("cd", "teacher"), ("ect", "init_from")):
            raise ValueError(f"--set {item!r}: the benchmark trains {method.upper()}'s teacher itself, a toy-edm run "
                             "on the same points (change it with --set edm:key=value)")
        out.setdefault(method, {})[key] = value
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/toy_quality", help="where runs and point files go (reused)")
    p.add_argument("--mixtures", nargs="+", default=list(MIXTURES), choices=list(MIXTURES))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--jobs", type=int, default=1, help="worker processes (one thread each)")
    p.add_argument("--set", nargs="*", default=[], metavar="METHOD:key=value", help="override a preset key")
    p.add_argument("--draws", type=int, default=pick(32, 2),
                   help="fresh-data draws of n_eval samples per ratio (each draw's energy distance varies by about "
                        "50%%: 3 draws leave the ratios about 40%% noisy)")
    p.add_argument("--fast", action="store_true", help="smoke size: 300 training points, 200 steps, 300 samples")
    p.add_argument("--mode-weights", metavar="RUN_DIR", help="only print mode_weights of this run (of --mixtures[0])")
    a = p.parse_args(argv)
    if a.mode_weights:
        return mode_weights(Path(a.mode_weights), a.mixtures[0])
    overrides = {m: dict(kv) for m, kv in PROTOCOL.items()}
    try:
        for m, kv in parse_overrides(a.set).items():
            overrides.setdefault(m, {}).update(kv)
    except ValueError as e:
        p.error(str(e))
    for m in ("edm", *a.methods):  # a bad key fails here, not in a worker after a teacher has trained
        try:
            config(m, "eight_gaussians", 0, overrides=overrides.get(m))
        except ValueError as e:
            p.error(f"toy-{m} with {overrides.get(m)}: {e}")
    n_train, n_eval, draws = (300, 300, 2) if a.fast else (20_000, pick(4000, 1000), a.draws)
    if a.fast:
        for m in ("edm", *METHODS):
            overrides.setdefault(m, {}).update(steps="200", checkpoint_every="200", log_every="50")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # three phases, each in parallel: the mixtures' references, the teachers CD and ECT share, then every method
    with ProcessPoolExecutor(a.jobs) if a.jobs > 1 else contextlib.nullcontext() as pool:
        pmap = pool.map if pool else map
        refs = dict(zip(a.mixtures, pmap(reference_job, [(name, n_eval, draws) for name in a.mixtures])))
        pairs = [(name, seed) for name in a.mixtures for seed in a.seeds] if set(a.methods) & set(TUNED) else []
        teachers = dict(zip(pairs, pmap(teacher_job, [(name, seed, out, n_train, n_eval, refs[name], overrides)
                                                      for name, seed in pairs])))
        tasks = [(name, seed, m, out, n_train, n_eval, refs[name], teachers.get((name, seed)) if m in TUNED else None,
                  overrides) for name in a.mixtures for seed in a.seeds for m in sorted(a.methods, key=ORDER.index)]
        rows = list(pmap(job, tasks))
    minutes = sum(r["minutes"] for r in [*refs.values(), *teachers.values(), *rows])
    print(f"energy distance / exact-score Heun N=18 ({n_eval} samples vs fresh data, mean of {draws} draws; "
          f"{n_train} training points; seeds {' / '.join(map(str, a.seeds))}); presets with: "
          f"{'; '.join(m + ' ' + ' '.join(f'{k}={v}' for k, v in kv.items()) for m, kv in overrides.items())}\n")
    print(table(rows))
    print(f"\ngoals: {', '.join(f'{m} {k} step <= {g}x' for (m, k), g in GOALS.items())}; "
          f"wall {(time.perf_counter() - t0) / 60:.1f} min, {minutes:.1f} job-minutes")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
