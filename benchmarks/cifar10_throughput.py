"""Training throughput of the CIFAR-10 presets: images/s for EDM, CD, CT and ECT steps, projected time for 800k
steps (and for cifar10-ect's 8000 steps at batch 128).

    python benchmarks/cifar10_throughput.py                  # full NCSN++ on the default device (GPU: bf16)
    python benchmarks/cifar10_throughput.py --size smoke     # tiny network, runs anywhere (CPU smoke)

Each configuration runs the real loss and optimizer step of cmlearn (same code as cmlearn.train.loop) on random
images in [-1, 1]: batch 128 directly, and batch 512 as 4 x 128 with gradient accumulation.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from cmlearn.core.ect import ECTLoss
from cmlearn.core.losses import CDLoss, CTLoss, EDMLoss
from cmlearn.core.parameterization import Denoiser
from cmlearn.runtime import default_device
from cmlearn.train.presets import get_preset
from cmlearn.train.runs import build_model


def model_and_loss(kind: str, size: str, device="cpu"):
    """The preset's model and its training loss (pseudo-Huber d: LPIPS needs downloaded VGG weights)."""
    model = build_model(get_preset(f"cifar10-{kind}", size=size)).to(device)
    if kind == "cd":
        teacher = Denoiser(copy.deepcopy(model.net)).to(device).eval().requires_grad_(False)
        return model, CDLoss(teacher, N=18, solver="heun", mu=0.0, distance="pseudo_huber")
    if kind == "ct":
        return model, CTLoss(K=800_000, distance="pseudo_huber")
    if kind == "ect":  # cifar10-ect: q = 256, one stage
        return model, ECTLoss(stage_steps=8000, q=256.0, distance="pseudo_huber")
    return model, EDMLoss()


def bench(kind: str, size: str, device, *, micro: int, accum: int, amp: bool, iters: int, compile: bool) -> float:
    model, loss_fn = model_and_loss(kind, size, device)
    model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    opt = torch.optim.RAdam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(micro, 3, 32, 32, generator=gen) * 2 - 1).to(device).contiguous(memory_format=torch.channels_last)

    def step():
        opt.zero_grad(set_to_none=True)
        for _ in range(accum):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(net, net, x, k=0, generator=gen).mean()
            (loss / accum).backward()
        opt.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters * micro * accum / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="full")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    device = default_device()
    amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    print(f"device {device}, size {a.size}, bf16 autocast {amp}, compile {a.compile}")
    print(f"{'kind':5s} {'batch':>12s} {'images/s':>10s} {'days for 800k iters at batch 512':>34s}")
    for kind in ("edm", "cd", "ct", "ect"):
        for micro, accum in ((128, 1), (128, 4)):
            ips = bench(kind, a.size, device, micro=micro, accum=accum, amp=amp, iters=a.iters, compile=a.compile)
            days = 800_000 * 512 / ips / 86400
            print(f"{kind:5s} {f'{micro}x{accum}={micro * accum}':>12s} {ips:10.1f} {days:34.2f}")
            if kind == "ect" and accum == 1:
                print(f"      cifar10-ect (8000 steps x 128 images): {8000 * 128 / ips / 60:.1f} minutes")


if __name__ == "__main__":
    main()
