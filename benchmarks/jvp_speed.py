"""One training step of toy MeanFlow and toy sCT (loss, backward) with the MLP's own forward mode (``MLP.jvp``,
what cmlearn uses) against ``torch.func.jvp`` through the same network (the generic path), side by side in one run.

    python benchmarks/jvp_speed.py                     # the toy-meanflow / toy-sct networks and batch (512)
    python benchmarks/jvp_speed.py --batch 128 --rounds 5

Prints each step's mean time both ways (``--rounds`` rounds, interleaved, of ``--steps`` steps each; the best round
of each), their ratio, and checks that both ways give the same loss. torch.func.jvp reaches the MLP's layers through
functorch's wrappers and Python decompositions of the forward-mode rules; the written-out tangent is two matmuls
and a few elementwise products per layer, under no_grad. The sCT ratio holds two changes: the tangent itself, and one
pass that also gives F with autograd where the generic path runs a second forward pass for it.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from cmlearn.core.meanflow import MeanFlowLoss, MeanFlowModel
from cmlearn.core.scm import SCMLoss, TrigFlowFunction
from cmlearn.nets.mlp import MLP
from cmlearn.train.presets import get_preset


class Generic(nn.Module):
    """The same network without ``jvp``: the losses fall back to ``torch.func.jvp``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.inner = net

    def forward(self, *args):
        return self.inner(*args)


def step_time(model: nn.Module, loss_fn, x0: torch.Tensor, steps: int) -> tuple[float, float]:
    """Mean seconds of a loss + backward over ``steps`` steps, and the first step's loss (generator seeded)."""
    first = None
    t0 = time.perf_counter()
    for k in range(steps):
        loss = loss_fn(model, None, x0, k=10_000, generator=torch.Generator().manual_seed(k)).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        first = loss.item() if first is None else first
    return (time.perf_counter() - t0) / steps, first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    x0 = torch.randn(a.batch, 2, generator=torch.Generator().manual_seed(0))
    print(f"batch {a.batch}, float32, {torch.get_num_threads()} thread(s), best of {a.rounds} rounds of {a.steps} "
          f"steps, load {os.getloadavg()[0]:.2f}")
    for name in ("toy-meanflow", "toy-sct"):
        cfg = get_preset(name)
        torch.manual_seed(0)
        net = MLP(2, **cfg.net_kwargs)
        if name == "toy-meanflow":
            loss_fn = MeanFlowLoss(sampler=cfg.mf_times, ratio=cfg.mf_ratio, adaptive_p=cfg.mf_adaptive_p,
                                   stable_target=cfg.stable_target)
            fast, generic = MeanFlowModel(net), MeanFlowModel(Generic(net))
        else:
            loss_fn = SCMLoss(p_mean=cfg.p_mean, p_std=cfg.p_std, tangent_norm=cfg.tangent_norm)
            fast = TrigFlowFunction(net, time_input=cfg.time_input)
            generic = TrigFlowFunction(Generic(net), time_input=cfg.time_input)
            generic.weight = fast.weight
        for model in (generic, fast):  # warm-up: torch.func.jvp's first call sets up its decompositions (~1 s)
            step_time(model, loss_fn, x0, 1)
        times: dict[str, list[float]] = {"fast": [], "generic": []}
        losses = {}
        for _ in range(a.rounds):  # interleaved, so that a change in the machine's load hits both
            for key, model in (("generic", generic), ("fast", fast)):
                seconds, losses[key] = step_time(model, loss_fn, x0, a.steps)
                times[key].append(seconds)
        gap = abs(losses["fast"] - losses["generic"]) / abs(losses["generic"])
        assert gap < 1e-4, losses
        t_gen, t_fast = min(times["generic"]), min(times["fast"])
        print(f"{name}: torch.func.jvp {t_gen * 1e3:.1f} ms, MLP.jvp {t_fast * 1e3:.1f} ms -> "
              f"{t_gen / t_fast:.2f}x (first loss {losses['fast']:.5g} both ways, relative gap {gap:.1e})")


if __name__ == "__main__":
    main()
