"""The stable target's posterior mean with a reference batch (``cmlearn.core.stable_target.batch_posterior_mean``)
against the same weights as one plain softmax over all (B, B + M) logits, the form cmlearn used until 2026-12-02,
side by side in one run.

    python benchmarks/stable_target_speed.py                 # B = 512, M = 4096, t lognormal(-1.1, 3): toy iCT's
    python benchmarks/stable_target_speed.py --batch 256 --ref 1024 --rounds 20

Prints the mean time of ``--rounds`` calls each way, their ratio, and checks that both give the same means. At large
snr most weights of a row underflow into subnormal floats, which a CPU handles slowly; cmlearn floors each logit at
its row's max - 75 and computes the weights a block of rows at a time, so that they stay in cache.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from cmlearn.core.stable_target import batch_posterior_mean


def one_softmax(x0: torch.Tensor, z: torch.Tensor, snr: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The old form: the (B, B + M) logits (s^2 x_i + s z_i).x_j - s^2 |x_j|^2 / 2 and one softmax over them."""
    s, xs = snr[:, None], torch.cat([x0, reference])
    return torch.softmax((s * s * x0 + s * z) @ xs.T - s * s * (xs * xs).sum(1) / 2, dim=1) @ xs


def mean_time(fn, rounds: int) -> tuple[float, torch.Tensor]:
    value = fn()
    t0 = time.perf_counter()
    for _ in range(rounds):
        value = fn()
    return (time.perf_counter() - t0) / rounds, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--ref", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=30)
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    g = torch.Generator().manual_seed(0)
    x0, z = torch.randn(a.batch, 2, generator=g) * 0.5, torch.randn(a.batch, 2, generator=g)
    reference = torch.randn(a.ref, 2, generator=g) * 0.5
    snr = 1 / torch.exp(-1.1 + 3.0 * torch.randn(a.batch, generator=g)).clamp(0.002, 80)  # toy iCT's t, p_std 3
    t_old, v_old = mean_time(lambda: one_softmax(x0, z, snr, reference), a.rounds)
    t_new, v_new = mean_time(lambda: batch_posterior_mean(x0, z, snr, reference=reference), a.rounds)
    err = float((v_old - v_new).abs().max())
    assert err < 1e-4, err
    print(f"B = {a.batch}, M = {a.ref}, float32, {torch.get_num_threads()} thread(s), mean of {a.rounds}, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"one softmax {t_old * 1e3:.3g} ms, cmlearn {t_new * 1e3:.3g} ms -> {t_old / t_new:.2f}x "
          f"(largest difference {err:.1e})")


if __name__ == "__main__":
    main()
