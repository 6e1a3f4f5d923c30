"""Compute of the paper's CIFAR-10 runs, counted: FLOPs per training image of EDM, CD and CT steps, and GPU-hours.

    python benchmarks/cifar10_flops.py                 # full NCSN++, LPIPS(VGG) at 224 as the presets use
    python benchmarks/cifar10_flops.py --tflops 300    # GPU-hours at another sustained throughput

FLOPs are counted by torch.utils.flop_counter on CPU (batch 2, real losses of cmlearn, forward and backward). The
GPU-hours divide the total by an *assumed* sustained throughput (--tflops, bf16): a planning figure until
benchmarks/cifar10_throughput.py has been run on the GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cmlearn.core.perceptual import LPIPSDistance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10_throughput import model_and_loss  # noqa: E402  (the same model and loss as the throughput benchmark)

IMAGES = {"edm": 200e6, "cd": 800_000 * 512, "ct": 800_000 * 512}  # EDM: 200M images (Karras et al. 2022)


def flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def step_flops(kind: str, size: str, batch: int = 2) -> float:
    """FLOPs per image of one training step's loss forward and backward (pseudo-Huber d; LPIPS counted apart)."""
    model, loss_fn = model_and_loss(kind, size)
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    return flops(lambda: loss_fn(model, model, x, k=0, generator=gen).mean().backward()) / batch


def lpips_flops(batch: int = 2) -> float:
    """FLOPs per image of d(f_theta, f_theta-) with LPIPS(VGG) at 224: forward of both, backward into the first."""
    d = LPIPSDistance(pretrained=False)
    x = torch.rand(batch, 3, 32, 32, requires_grad=True)
    y = torch.rand(batch, 3, 32, 32)
    return flops(lambda: d(x * 2 - 1, y * 2 - 1).sum().backward()) / batch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="full")
    p.add_argument("--tflops", type=float, default=200.0, help="assumed sustained bf16 TFLOP/s per GPU")
    a = p.parse_args()
    lp = lpips_flops()
    print(f"LPIPS(VGG) at 224, forward x2 + backward: {lp / 1e9:.1f} GFLOP per image")
    print(f"| run | GFLOP per image | images | total FLOP | GPU-hours at {a.tflops:g} TFLOP/s |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("edm", "cd", "ct"):
        per = step_flops(kind, a.size) + (lp if kind in ("cd", "ct") else 0.0)
        total = per * IMAGES[kind]
        hours = total / (a.tflops * 1e12) / 3600
        print(f"| {kind} | {per / 1e9:.1f} | {IMAGES[kind]:.3g} | {total:.3g} | {hours:.0f} |")


if __name__ == "__main__":
    main()
