"""Sliced W2 (``cmlearn.metrics.sliced_wasserstein``) against the same estimator with its projections laid out
(n, n_projections) and sorted along dim 0, the layout cmlearn used until 2026-12-02, side by side in one run.

    python benchmarks/sliced_w2_speed.py                 # 20k points vs 20k, 1000 projections (the README's evaluation)
    python benchmarks/sliced_w2_speed.py --n 10000 --projections 200 --rounds 5

Prints the best time of ``--rounds`` calls each way, their ratio, and checks that both give the same distance.
Sorting a (n, P) tensor along dim 0 reads memory with a stride of P; the (P, n) layout sorts contiguous rows.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from cmlearn.metrics import sliced_wasserstein


def sliced_wasserstein_dim0(a: torch.Tensor, b: torch.Tensor, *, n_projections: int, seed: int = 0) -> float:
    """The same estimator (equal sample sizes) with the old layout: (n, P), sorted along dim 0."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], n_projections, dtype=torch.float64, generator=g)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, pb = (a @ dirs).sort(0).values, (b @ dirs).sort(0).values
    return float(((pa - pb) ** 2).mean().sqrt())


def best_of(fn, rounds: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--projections", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.n, 2, dtype=torch.float64, generator=g)
    y = torch.randn(a.n, 2, dtype=torch.float64, generator=g) * 1.1 + 0.1
    t_old, v_old = best_of(lambda: sliced_wasserstein_dim0(x, y, n_projections=a.projections), a.rounds)
    t_new, v_new = best_of(lambda: sliced_wasserstein(x, y, n_projections=a.projections), a.rounds)
    assert abs(v_old - v_new) <= 1e-12 * max(abs(v_old), 1.0), (v_old, v_new)
    print(f"{a.n} vs {a.n} points, {a.projections} projections, {torch.get_num_threads()} thread(s), best of "
          f"{a.rounds}, load {os.getloadavg()[0]:.2f}")
    print(f"sorted along dim 0 {t_old * 1e3:.1f} ms, cmlearn {t_new * 1e3:.1f} ms -> {t_old / t_new:.2f}x "
          f"(both {v_new:.6f})")


if __name__ == "__main__":
    main()
