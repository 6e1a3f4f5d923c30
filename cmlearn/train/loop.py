"""One training loop for EDM teachers, CD (Alg. 2), CT (Alg. 3) and iCT, readable top to bottom.

target EMA theta- <- mu theta- + (1 - mu) theta (Alg. 2/3), a separate eval EMA, checkpoints every k steps with exact
resume, a JSONL metrics log, a NaN/Inf guard, AMP/compile/channels_last switches and DDP under torchrun.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cmlearn.core.losses import CDLoss, CTLoss, EDMLoss, ICTLoss
from cmlearn.train.checkpoint import load_checkpoint, save_checkpoint
from cmlearn.train.config import TrainConfig
from cmlearn.train.runs import build_model, build_source, build_teacher, frozen_copy, load_run


def make_loss(cfg: TrainConfig, teacher=None):
    """The objective of ``cfg.kind`` with the config's grid, distance and curriculum."""
    grid = dict(eps=cfg.eps, T=cfg.T, rho=cfg.rho, distance=cfg.distance, weighting=cfg.weighting)
    K = cfg.K or cfg.steps
    if cfg.kind == "edm":
        return EDMLoss(sigma_data=cfg.sigma_data)
    if cfg.kind == "cd":
        return CDLoss(teacher, N=cfg.N, solver=cfg.solver, mu=cfg.mu, **grid)
    curriculum = {k: v for k, v in (("s0", cfg.s0), ("s1", cfg.s1)) if v}
    if cfg.kind == "ct":
        return CTLoss(K=K, mu0=cfg.mu0, official_mu=cfg.official_mu, N=cfg.ct_fixed_N or None,
                      mu=cfg.ct_fixed_mu if cfg.ct_fixed_mu >= 0 else None, **curriculum, **grid)
    return ICTLoss(K=K, p_mean=cfg.p_mean, p_std=cfg.p_std, N=cfg.ct_fixed_N or None, **curriculum, **grid)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warmup, then constant, cosine or linear decay to lr * lr_final."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    if cfg.lr_schedule == "cosine":
        return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * frac)))
    if cfg.lr_schedule == "linear":
        return cfg.lr * (1 - (1 - cfg.lr_final) * frac)
    return cfg.lr


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for parameters (buffers copied)."""
    ep, mp = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(ep, mp, 1.0 - decay)
    for eb, mb in zip(ema.buffers(), model.buffers()):
        eb.copy_(mb)


def resolve_device(cfg: TrainConfig) -> torch.device:
    from cmlearn.runtime import default_device

    if cfg.device != "auto":
        return torch.device(cfg.device)
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = default_device()
    return torch.device("cuda", local) if dev.type == "cuda" else dev


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = True, progress: bool | None = None,
          on_checkpoint: Callable | None = None, stop_at: int | None = None) -> Path:
    """Train ``cfg`` into ``out_dir`` (config.json, checkpoints/latest.pt, metrics.jsonl); returns out_dir.

    ``stop_at`` ends this call early at that step (as an interruption would); calling again resumes.
    """
    out = Path(out_dir)
    rank, world = _distributed()
    device = resolve_device(cfg)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
    if cfg.batch_size % (world * cfg.grad_accum):
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by world size x grad_accum = "
                         f"{world} x {cfg.grad_accum}")
    micro = cfg.batch_size // (world * cfg.grad_accum)

    # ---- data, model, target, eval EMA, optimizer
    torch.manual_seed(cfg.seed)
    source = build_source(cfg)
    dim = getattr(source, "dim", None)
    model = build_model(cfg, dim=dim).to(device)
    if cfg.init_from:
        init = load_run(cfg.teacher if cfg.init_from == "teacher" else cfg.init_from, device=device)
        missing = model.net.load_state_dict(init.model.net.state_dict(), strict=False)
        if missing.missing_keys:
            raise ValueError(f"init_from={cfg.init_from}: network does not match ({missing.missing_keys[:3]} ...)")
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher = build_teacher(cfg, source, device) if cfg.kind == "cd" else None
    loss_fn = make_loss(cfg, teacher)
    if isinstance(getattr(loss_fn, "d", None), nn.Module):  # LPIPS: a frozen network on the training device
        loss_fn.d = loss_fn.d.to(device)
    separate_target = cfg.kind != "edm" and not _always_zero(loss_fn)
    target = frozen_copy(model) if separate_target else model
    ema = frozen_copy(model).eval()
    opt_cls = torch.optim.RAdam if cfg.optimizer == "radam" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr)
    # one generator per micro-batch slot (rank, accumulation step): 2 ranks x 1 step see the same data and
    # noise as 1 rank x 2 accumulation steps, so a DDP run matches a single-process run at the same global batch
    slots = [rank * cfg.grad_accum + a for a in range(cfg.grad_accum)]
    gens = [torch.Generator().manual_seed(cfg.seed * 1000 + s) for s in slots]
    step = 0

    # ---- resume exactly where the last checkpoint left off
    ckpt_path = out / "checkpoints" / "latest.pt"
    if resume and ckpt_path.exists():
        saved = TrainConfig.load(out / "config.json").to_dict()
        diff = {k for k, v in cfg.to_dict().items() if saved.get(k) != v and k not in ("steps", "checkpoint_every",
                                                                                       "log_every", "device")}
        if diff:
            raise ValueError(f"{out} holds a run with a different config ({sorted(diff)}); use another --out")
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if separate_target:
            target.load_state_dict(state["target"])
        opt.load_state_dict(state["opt"])
        if len(state["gen"]) != world * cfg.grad_accum:
            raise ValueError(f"{ckpt_path} was written by {len(state['gen'])} ranks x accumulation steps; resume it "
                             f"with the same world size x grad_accum (now {world} x {cfg.grad_accum})")
        for g, s in zip(gens, slots):
            g.set_state(state["gen"][s])
        torch.set_rng_state(state["rng"])
        step = state["step"]
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")

    net = ddp = model
    if world > 1:
        net = ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    if cfg.compile:
        net = torch.compile(net)
    tgt_net = net if not separate_target else target
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp)

    def save():
        states = _gather([g.get_state() for g in gens], world)
        sums = _gather([sum(float(p.detach().double().sum()) for p in model.parameters())], world)
        if len(set(sums)) != 1:
            raise RuntimeError(f"ranks disagree on the weights at step {step}: parameter checksums {sums}")
        if rank == 0:
            save_checkpoint({"step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                             "target": target.state_dict() if separate_target else None,
                             "opt": opt.state_dict(), "gen": states, "rng": torch.get_rng_state(), "dim": dim,
                             "rank_checksums": sums, "world": world, "config": cfg.to_dict()}, ckpt_path)
            if on_checkpoint is not None:
                on_checkpoint(step, ema)

    # ---- the loop
    show = (sys.stderr.isatty() if progress is None else progress) and rank == 0
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not show, desc=f"{cfg.preset or cfg.kind}")
    log = open(out / "metrics.jsonl", "a") if rank == 0 else None
    loss_sum, n_sum, t0 = torch.zeros((), device=device), 0, time.perf_counter()
    model.train()
    last = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    while step < last:
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        opt.zero_grad(set_to_none=True)
        for a, gen in enumerate(gens):
            x0 = source.batch(micro, gen).to(device, non_blocking=True)
            if cfg.channels_last and x0.ndim == 4:
                x0 = x0.contiguous(memory_format=torch.channels_last)
            sync = a == cfg.grad_accum - 1 or world == 1
            ctx = ddp.no_sync() if (world > 1 and not sync) else _null()
            with ctx, amp:
                loss = loss_fn(net, tgt_net, x0, k=step, generator=gen).mean()
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
            n_sum += 1
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; stopped. The last good checkpoint is "
                                     f"{ckpt_path} (try a lower lr, currently {learning_rate(cfg, step):.3g})")
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if separate_target:
            ema_update(target, model, loss_fn.target_decay(step))
        ema_update(ema, model, cfg.ema_decay)
        step += 1
        bar.update(1)
        if log is not None and (step % cfg.log_every == 0 or step == cfg.steps):
            dt = time.perf_counter() - t0
            rec = {"step": step, "loss": float(loss_sum) / max(n_sum, 1), "lr": learning_rate(cfg, step - 1),
                   "steps_per_s": n_sum / cfg.grad_accum / dt}
            if cfg.kind != "edm":
                rec.update(N=loss_fn.num_steps(step - 1), mu=loss_fn.target_decay(step - 1))
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.4g}")
            loss_sum, n_sum, t0 = torch.zeros((), device=device), 0, time.perf_counter()
        if step % cfg.checkpoint_every == 0 or step == last:
            save()
    bar.close()
    if log is not None:
        log.close()
    return out


def _always_zero(loss_fn) -> bool:
    """True when theta- = theta at every step (CD with mu = 0, iCT): then the online net is its own target."""
    return getattr(loss_fn, "mu", None) == 0.0


def _gather(items: list, world: int) -> list:
    """Concatenate every rank's ``items`` in rank order (identity on one process)."""
    if world == 1:
        return list(items)
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
