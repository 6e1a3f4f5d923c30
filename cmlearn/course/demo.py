"""``cmlearn demo`` (``make demo``): the course in under a minute on the built-in default (eight Gaussians).

1. the exact-score PF ODE: trajectories from noise to data (Heun, N = 18) and the exact consistency function
   f(x_t, t) along them (flat in t);
2. consistency distillation (Algorithm 2) from that exact score, preset ``toy-cd``: the shipped run of exactly
   this config (``data/pretrained/``, built by ``scripts/build_pretrained.py``), or trained here with ``--train``
   (a progress bar, minutes); its 1- and 2-step samples and their sliced W2 to fresh data beside the exact-score
   teacher's Heun N = 18 (34 network evaluations) and the data-vs-data floor.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm


def _stage(k: int, text: str) -> float:
    print(f"[{k}/2] {text}", flush=True)
    return time.perf_counter()


def run_demo(out: str | Path = "runs/demo", *, train_full: bool = False) -> dict:
    """Write the demo's figures and summary.json under ``out``; returns the summary (sliced W2 numbers, times).
    ``train_full``: train toy-cd here (with a progress bar) instead of loading the shipped run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cmlearn.core.pfode import reference_solve, solve
    from cmlearn.core.sampling import prior_noise
    from cmlearn.core.schedules import EPS, T_MAX, karras_sigmas
    from cmlearn.course.plotting import plot_consistency_along_trajectory, plot_points, plot_trajectories
    from cmlearn.data.toys2d import preset
    from cmlearn.runtime import pick, seed_everything
    from cmlearn.train.cache import pretrained_dir, train_or_load
    from cmlearn.train.evaluate import evaluate_points, generate
    from cmlearn.train.presets import get_preset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen, dist, written, t_all = seed_everything(0), preset("eight_gaussians"), [], time.perf_counter()

    def save(fig, name):
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(out / name)

    t0 = _stage(1, "the exact-score PF ODE of eight Gaussians: trajectories and the consistency function")
    xT = prior_noise(400, (2,), sigma=T_MAX, generator=gen, dtype=torch.float64)
    save(plot_trajectories(solve(xT, karras_sigmas(18).flip(0), score=dist.score, method="heun",
                                 return_trajectory=True)), "trajectories.png")
    t_eval = karras_sigmas(20).flip(0)
    path = reference_solve(xT[:6], T_MAX, EPS, score=dist.score, t_eval=t_eval.tolist())  # (20, 6, 2)
    f_vals = torch.stack([reference_solve(path[i], float(t), EPS, score=dist.score) if i < len(t_eval) - 1
                          else path[i] for i, t in enumerate(tqdm(t_eval, desc="f(x_t, t) by dopri5", leave=False))])
    save(plot_consistency_along_trajectory(t_eval, f_vals), "consistency_function.png")
    print(f"      {time.perf_counter() - t0:.0f} s")

    full_cfg = get_preset("toy-cd")
    shipped = not train_full and pretrained_dir(full_cfg) is not None
    how = "the shipped run (cmlearn demo --train trains it, minutes)" if shipped else "training it"
    t0 = _stage(2, f"consistency distillation (Algorithm 2) from the exact score, toy-cd ({full_cfg.steps} steps): "
                   f"{how}")
    run = train_or_load(full_cfg, "toy-cd", cache=out, retrain=train_full, progress=True)
    n_eval = pick(10_000, 2000)
    res = evaluate_points(run, n=n_eval, seed=1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    plot_points(dist.sample(5000, generator=gen), ax=axes[0], title="data")
    for ax, k in zip(axes[1:], (1, 2)):
        plot_points(generate(run, 5000, steps=k, generator=gen), ax=ax,
                    title=f"toy-cd, {k} step(s): SW {res[f'sw_{k}step']:.3f}")
    save(fig, "cd_samples.png")
    res.update(shipped=shipped, seconds=time.perf_counter() - t_all)
    (out / "summary.json").write_text(json.dumps(res, indent=2))
    written.append(out / "summary.json")
    print(f"      {time.perf_counter() - t0:.0f} s; sliced W2 to fresh data ({n_eval} samples): 1 step "
          f"{res['sw_1step']:.4f}, 2 steps {res['sw_2step']:.4f}; exact-score Heun N=18 (34 NFE) "
          f"{res['sw_exact_heun18']:.4f}; data vs data {res['sw_floor']:.4f}")
    print(f"demo done in {res['seconds']:.0f} s. Figures:")
    for p in written:
        print(f"  {p}")
    return res
