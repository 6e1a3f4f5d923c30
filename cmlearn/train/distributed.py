"""Where and how a run runs: its device, its ranks under torchrun, its switches (bf16, compile, channels_last),
gradient accumulation that fits the micro-batch, and the randomness of each micro-batch (exact on resume, distinct
per rank)."""

from __future__ import annotations

import dataclasses
import os
import sys

import torch
from torch import nn

from cmlearn.train.config import CONTINUOUS, TrainConfig


def resolve_device(cfg: TrainConfig) -> torch.device:
    """``cfg.device``: "auto" (CUDA, MPS or CPU), "cpu", "cuda" (this rank's GPU under torchrun, else cuda:0)
    or "cuda:K"; a CUDA device is made current, with TF32 as ``cfg.tf32`` says."""
    from cmlearn.runtime import default_device

    dev = default_device() if cfg.device == "auto" else torch.device(cfg.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
    return dev


def accumulation(cfg: TrainConfig, world: int) -> int:
    """Micro-batches per step on each rank: grad_accum, raised until a forward pass holds at most micro_batch
    samples (the preset's global batch then runs as written on one GPU or many). Raises ValueError, before the
    first step, when batch_size does not split evenly."""
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the world size {world}")
    per_rank, accum = cfg.batch_size // world, cfg.grad_accum
    while cfg.micro_batch and per_rank // accum > cfg.micro_batch and accum < per_rank:
        accum += 1
        while per_rank % accum:
            accum += 1
    if per_rank % accum:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by world size x grad_accum = "
                         f"{world} x {accum}")
    return accum


def plan(cfg: TrainConfig, device: torch.device, *, world: int, rank: int) -> tuple[TrainConfig, dict[str, bool]]:
    """The config as run (grad_accum from ``accumulation``) and the switches; said once on rank 0 when any is on.
    Raises ValueError for a continuous-time kind on more than one rank (not supported under DDP yet)."""
    if world > 1 and cfg.kind in CONTINUOUS:
        raise ValueError(f"kind={cfg.kind!r} does not train under DDP yet (world size {world}): its loss calls the "
                         "network's own forward mode outside DDP's forward, so the ranks' gradients would not be "
                         "synchronised; train it on one process")
    run_cfg, fast = dataclasses.replace(cfg, grad_accum=accumulation(cfg, world)), switches(cfg, device)
    if rank == 0 and any(fast.values()):
        micro = cfg.batch_size // (world * run_cfg.grad_accum)
        print(f"{cfg.preset or cfg.kind} on {device}: " + ", ".join(k for k, v in fast.items() if v) + " on (switch "
              f"off with key=false); micro-batch {micro} x {run_cfg.grad_accum} accumulation x {world} rank(s)",
              file=sys.stderr)
    return run_cfg, fast


def switches(cfg: TrainConfig, device: torch.device) -> dict[str, bool]:
    """amp (bf16 autocast), compile, channels_last: "auto" turns each on for image networks on CUDA."""
    auto = device.type == "cuda" and cfg.net != "mlp"
    return {k: getattr(cfg, k) == "true" or (getattr(cfg, k) == "auto" and auto)
            for k in ("amp", "compile", "channels_last")}


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def micro_seed(seed: int, slot: int, step: int) -> int:
    """The seed of the global generators (CPU and CUDA: dropout masks) for one micro-batch: a function of the
    run seed, the micro-batch slot (rank x accumulation step) and the step, so ranks draw different masks, a
    2-rank run matches 1 process x 2 accumulation steps, and a resumed run draws what it would have drawn."""
    return (seed * 0x9E3779B1 + slot * 0xC2B2AE3D + step * 0x85EBCA77) % (2**63 - 1)


def rng_state(device: torch.device) -> dict:
    """The global generator states to checkpoint: CPU always, the device's CUDA generator when training on one."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what ``rng_state`` saved (the CUDA state only on a CUDA device)."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def gather(items: list, world: int) -> list:
    """Concatenate every rank's ``items`` in rank order (identity on one process)."""
    if world == 1:
        return list(items)
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]
