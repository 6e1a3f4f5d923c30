"""``cmlearn demo`` (``make demo``): the course in one minute-scale run on the built-in default (eight Gaussians).

1. the exact-score PF ODE: trajectories from noise to data (Heun, N = 18) and the exact consistency function
   f(x_t, t) along them (flat in t);
2. a toy consistency model distilled from that exact score (preset toy-cd), its 1- and 2-step samples, and the
   sample distance to fresh data beside the teacher's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


def run_demo(out: str | Path = "runs/demo", *, preset_name: str = "eight_gaussians") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cmlearn.core.pfode import reference_solve, solve
    from cmlearn.core.sampling import prior_noise
    from cmlearn.core.schedules import EPS, T_MAX, karras_sigmas
    from cmlearn.course.plotting import plot_consistency_along_trajectory, plot_points, plot_trajectories
    from cmlearn.data.toys2d import preset
    from cmlearn.runtime import seed_everything
    from cmlearn.train.evaluate import evaluate_points, generate
    from cmlearn.train.loop import train
    from cmlearn.train.presets import get_preset
    from cmlearn.train.runs import load_run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = seed_everything(0)
    dist = preset(preset_name)
    written = []

    # 1. exact PF ODE trajectories, and the exact consistency function along a few of them
    ts = karras_sigmas(18).flip(0)
    xT = prior_noise(400, (2,), sigma=T_MAX, generator=gen, dtype=torch.float64)
    traj = solve(xT, ts, score=dist.score, method="heun", return_trajectory=True)
    fig = plot_trajectories(traj)
    fig.savefig(out / "trajectories.png", dpi=120)
    plt.close(fig)
    written.append(out / "trajectories.png")

    t_eval = karras_sigmas(40).flip(0)
    path = reference_solve(xT[:6], T_MAX, EPS, score=dist.score, t_eval=t_eval.tolist())  # (40, 6, 2)
    f_vals = torch.stack([reference_solve(path[i], float(t), EPS, score=dist.score) if i < len(t_eval) - 1
                          else path[i] for i, t in enumerate(t_eval)])
    fig = plot_consistency_along_trajectory(t_eval, f_vals)
    fig.savefig(out / "consistency_function.png", dpi=120)
    plt.close(fig)
    written.append(out / "consistency_function.png")

    # 2. a consistency model distilled from the exact score
    t0 = time.perf_counter()
    cfg = get_preset("toy-cd").override({"data": preset_name})
    run_dir = train(cfg, out / "toy-cd", resume=False)
    minutes = (time.perf_counter() - t0) / 60
    run = load_run(run_dir)
    res = evaluate_points(run, n=5000, seed=1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    data = dist.sample(5000, generator=gen)
    plot_points(data, ax=axes[0], title="data")
    plot_points(generate(run, 5000, steps=1, generator=gen), ax=axes[1], title="CD, 1 step")
    plot_points(generate(run, 5000, steps=2, generator=gen), ax=axes[2], title="CD, 2 steps")
    fig.savefig(out / "cd_samples.png", dpi=120)
    plt.close(fig)
    written.append(out / "cd_samples.png")
    res["train_minutes"] = minutes
    (out / "summary.json").write_text(json.dumps(res, indent=2))
    written.append(out / "summary.json")

    print(f"toy-cd trained in {minutes:.1f} min; sliced W2 to fresh data: 1 step {res['sw_1step']:.4f}, "
          f"2 steps {res['sw_2step']:.4f}, exact-score Heun N=18 {res['sw_exact_heun18']:.4f}")
    for p in written:
        print(f"wrote {p}")
    return res
