"""One training loop for EDM teachers, CD (Alg. 2), CT (Alg. 3) and iCT, readable top to bottom.

target EMA theta- <- mu theta- + (1 - mu) theta (Alg. 2/3), a separate eval EMA, checkpoints every k steps with exact
resume, a JSONL metrics log, a NaN/Inf guard, AMP/compile/channels_last switches and DDP under torchrun.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from cmlearn.core.ect import ECTLoss
from cmlearn.core.losses import CDLoss, CTLoss, EDMLoss, ICTLoss
from cmlearn.core.pd import PDLoss
from cmlearn.train.checkpoint import load_checkpoint, save_checkpoint
from cmlearn.train.config import CONTINUOUS, TrainConfig
from cmlearn.train.continuous import continuous_loss
from cmlearn.train.distributed import (
    distributed,
    gather,
    micro_seed,
    plan,
    resolve_device,
    rng_state,
    set_rng_state,
    wrap_ddp,
)
from cmlearn.train.runs import build_model, build_source, build_teacher, frozen_copy, load_run


def make_loss(cfg: TrainConfig, teacher=None):
    """The objective of ``cfg.kind`` with the config's grid, distance and curriculum."""
    grid = dict(eps=cfg.eps, T=cfg.T, rho=cfg.rho, distance=cfg.distance, weighting=cfg.weighting,
                huber_c=cfg.huber_c)
    K = cfg.K or cfg.steps
    if cfg.kind == "edm":
        return EDMLoss(sigma_data=cfg.sigma_data, stable_target=cfg.stable_target)
    if cfg.kind == "cd":
        return CDLoss(teacher, N=cfg.N, solver=cfg.solver, mu=cfg.mu, **grid)
    if cfg.kind == "pd":  # one round (cmlearn.train.pd runs the rounds)
        return PDLoss(teacher, nfe=cfg.pd_nfe, eps=cfg.eps, T=cfg.T, rho=cfg.rho, sigma_data=cfg.sigma_data)
    if cfg.kind == "ect":  # Easy Consistency Tuning: stages of ect_stage_steps (default 8), after any short ones
        return ECTLoss(stage_steps=cfg.ect_stage_steps or max(1, cfg.steps // 8), q=cfg.ect_q, p_mean=cfg.p_mean,
                       p_std=cfg.p_std, distance=cfg.distance, eps=cfg.eps, T=cfg.T,
                       huber_c=cfg.huber_c, short_stages=cfg.ect_short_stages, short_steps=cfg.ect_short_steps,
                       stable_target=cfg.stable_target, weighting=cfg.ect_weighting, sigma_data=cfg.sigma_data)
    if cfg.kind in CONTINUOUS:  # sCT, sCD, MeanFlow
        return continuous_loss(cfg, teacher)
    curriculum = {k: v for k, v in (("s0", cfg.s0), ("s1", cfg.s1)) if v}
    if cfg.kind == "ct":
        return CTLoss(K=K, mu0=cfg.mu0, official_mu=cfg.official_mu, N=cfg.ct_fixed_N or None,
                      mu=cfg.ct_fixed_mu if cfg.ct_fixed_mu >= 0 else None, stable_target=cfg.stable_target,
                      **curriculum, **grid)
    return ICTLoss(K=K, p_mean=cfg.p_mean, p_std=cfg.p_std, N=cfg.ct_fixed_N or None,
                   stable_target=cfg.stable_target, **curriculum, **grid)


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


def init_model(cfg: TrainConfig, shape: tuple[int, ...], device: torch.device, *, channels_last: bool) -> nn.Module:
    """The online model theta, initialised from ``cfg.init_from`` (a RUN_DIR, or "teacher") when set."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, shape=shape).to(device)
    if cfg.init_from:
        init = load_run(cfg.teacher if cfg.init_from == "teacher" else cfg.init_from, device=device)
        theirs, ours = init.cfg.net_kwargs, cfg.net_kwargs  # dropout may differ; the function computed may not
        bad = sorted(k for k in set(theirs) | set(ours) if k != "dropout" and theirs.get(k) != ours.get(k))
        if init.cfg.net != cfg.net or bad:
            key = bad[0] if bad else "net"
            raise ValueError(f"init_from={cfg.init_from}: its network has {key}={theirs.get(key, init.cfg.net)!r}, "
                             f"this config {key}={ours.get(key, cfg.net)!r}; set net_kwargs to match")
        missing = model.net.load_state_dict(init.model.net.state_dict(), strict=False)
        if missing.missing_keys:
            raise ValueError(f"init_from={cfg.init_from}: network does not match ({missing.missing_keys[:3]} ...)")
    return model.to(memory_format=torch.channels_last) if channels_last else model


def restore(out: Path, cfg: TrainConfig, parts: dict, gens: list, slots: list[int], *, n_slots: int,
            device: torch.device) -> int:
    """Load out/checkpoints/latest.pt into ``parts`` (model, ema, target, opt) and the generators; returns its
    step. Refuses a checkpoint of another config or another world size x grad_accum."""
    saved = TrainConfig.load(out / "config.json").to_dict()
    free = ("steps", "checkpoint_every", "log_every", "device", "micro_batch", "amp", "compile", "channels_last")
    diff = {k for k, v in cfg.to_dict().items() if saved.get(k) != v and k not in free}
    if diff:
        raise ValueError(f"{out} holds a run with a different config ({sorted(diff)}); use another --out")
    path = out / "checkpoints" / "latest.pt"
    state = load_checkpoint(path)
    if len(state["gen"]) != n_slots:
        raise ValueError(f"{path} was written by {len(state['gen'])} ranks x accumulation steps; resume it with "
                         f"the same world size x grad_accum (now {n_slots})")
    for key, part in parts.items():
        if part is not None:
            part.load_state_dict(state[key])
    for g, s in zip(gens, slots):
        g.set_state(state["gen"][s])
    set_rng_state(state["rng"], device)
    return state["step"]


def log_record(cfg: TrainConfig, loss_fn, step: int, loss_sum: torch.Tensor, n: int, seconds: float) -> dict:
    """One line of metrics.jsonl: mean loss since the last record, lr, speed, and N(k), mu(k) for CMs."""
    rec = {"step": step, "loss": float(loss_sum) / max(n, 1), "lr": learning_rate(cfg, step - 1),
           "steps_per_s": n / cfg.grad_accum / seconds}
    if cfg.kind != "edm":
        rec.update(N=loss_fn.num_steps(step - 1), mu=loss_fn.target_decay(step - 1))
    return rec


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = True, progress: bool | None = None,
          on_checkpoint: Callable | None = None, stop_at: int | None = None) -> Path:
    """Train ``cfg`` into ``out_dir`` (config.json, checkpoints/latest.pt, metrics.jsonl); returns out_dir.

    ``progress``: a tqdm bar (default: in a terminal or a notebook). ``on_checkpoint(step, ema)`` runs after each
    checkpoint. ``stop_at`` ends this call early at that step (as an interruption would); calling again resumes.
    Raises FloatingPointError on a non-finite loss (any micro-batch), naming the last good checkpoint."""
    out, (rank, world), device = Path(out_dir), distributed(), resolve_device(cfg)
    saved_cfg, (cfg, fast) = cfg, plan(cfg, device, world=world, rank=rank)
    accum, micro = cfg.grad_accum, cfg.batch_size // (world * cfg.grad_accum)

    # ---- data, model theta, target theta-, eval EMA, loss, optimizer
    source = build_source(cfg)
    model = init_model(cfg, source.shape, device, channels_last=fast["channels_last"])
    loss_fn = make_loss(cfg, build_teacher(cfg, source, device) if cfg.kind in ("cd", "pd", "scd") else None)
    if isinstance(getattr(loss_fn, "d", None), nn.Module):  # LPIPS: a frozen network on the training device
        loss_fn.d = loss_fn.d.to(device)
    separate_target = cfg.kind != "edm" and not _always_zero(loss_fn)
    target = frozen_copy(model) if separate_target else model
    ema = frozen_copy(model).eval()
    opt = (torch.optim.RAdam if cfg.optimizer == "radam" else torch.optim.Adam)(model.parameters(), lr=cfg.lr)
    # one generator per micro-batch slot (rank, accumulation step): 2 ranks x 1 step see the same data and
    # noise as 1 rank x 2 accumulation steps, so a DDP run matches a single-process run at the same global batch
    slots = [rank * cfg.grad_accum + a for a in range(cfg.grad_accum)]
    gens = [torch.Generator().manual_seed(cfg.seed * 1000 + s) for s in slots]
    parts = {"model": model, "ema": ema, "target": target if separate_target else None, "opt": opt}
    ckpt_path = out / "checkpoints" / "latest.pt"
    resumable = resume and ckpt_path.exists()
    step = restore(out, saved_cfg, parts, gens, slots, n_slots=world * accum, device=device) if resumable else 0
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        saved_cfg.save(out / "config.json")
    net = ddp = wrap_ddp(model, device) if world > 1 else model
    net = torch.compile(net) if fast["compile"] else net
    tgt_net = target if separate_target else net
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast["amp"])

    # ---- the loop
    last = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    bar = _bar(cfg, step, out.name, show=(_interactive() if progress is None else progress) and rank == 0)
    loss_sum, n_sum, t0 = torch.zeros((), device=device), 0, time.perf_counter()
    model.train()
    with open(out / "metrics.jsonl", "a" if step else "w") if rank == 0 else nullcontext() as log, bar:
        while step < last:
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            opt.zero_grad(set_to_none=True)
            for a, gen in enumerate(gens):
                torch.manual_seed(micro_seed(cfg.seed, slots[a], step))  # dropout masks
                x0 = source.batch(micro, gen).to(device, non_blocking=True)
                if fast["channels_last"] and x0.ndim == 4:
                    x0 = x0.contiguous(memory_format=torch.channels_last)
                with (ddp.no_sync() if world > 1 and a < cfg.grad_accum - 1 else nullcontext()), amp:
                    loss = loss_fn(net, tgt_net, x0, k=step, generator=gen, **reference(cfg, source, gen)).mean()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at step {step} (micro-batch {a}); stopped. The "
                                             f"last good checkpoint is {ckpt_path} (try a lower lr, now "
                                             f"{learning_rate(cfg, step):.3g})")
                (loss / cfg.grad_accum).backward()
                loss_sum, n_sum = loss_sum + loss.detach(), n_sum + 1
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if separate_target:
                ema_update(target, model, loss_fn.target_decay(step))
            ema_update(ema, model, cfg.ema_decay)
            step += 1
            bar.update(1)
            if log is not None and (step % cfg.log_every == 0 or step == cfg.steps):
                rec = log_record(cfg, loss_fn, step, loss_sum, n_sum, time.perf_counter() - t0)
                log.write(json.dumps(rec) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{rec['loss']:.4g}")
                loss_sum, n_sum, t0 = torch.zeros((), device=device), 0, time.perf_counter()
            if step % cfg.checkpoint_every == 0 or step == last:
                save(ckpt_path, saved_cfg, parts, step=step, gens=gens, shape=source.shape, rank=rank, world=world,
                     device=device)
                if rank == 0 and on_checkpoint is not None:
                    on_checkpoint(step, ema)
    return out


def save(path: Path, cfg: TrainConfig, parts: dict, *, step: int, gens: list, shape: tuple[int, ...], rank: int,
         world: int, device: torch.device) -> None:
    """Write the checkpoint (rank 0) after checking every rank holds the same weights (a DDP desync guard)."""
    model = parts["model"]
    states = gather([g.get_state() for g in gens], world)
    sums = gather([sum(float(p.detach().double().sum()) for p in model.parameters())], world)
    if len(set(sums)) != 1:
        raise RuntimeError(f"ranks disagree on the weights at step {step}: parameter checksums {sums}")
    if rank == 0:
        state = {k: (v.state_dict() if v is not None else None) for k, v in parts.items()}
        save_checkpoint({**state, "step": step, "gen": states, "rng": rng_state(device), "shape": list(shape),
                         "rank_checksums": sums, "world": world, "config": cfg.to_dict()}, path)


def reference(cfg: TrainConfig, source, gen: torch.Generator) -> dict:
    """The loss's extra keyword: ``stable_ref`` more data points for the stable target's posterior mean (STF's
    reference batch), drawn after the batch from the same generator (on the CPU; the loss moves them to the
    batch's device); nothing when stable_ref = 0."""
    return {"reference": source.batch(cfg.stable_ref, gen)} if cfg.stable_ref else {}


def _interactive() -> bool:
    """A terminal or a Jupyter kernel: where a progress bar is read."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _bar(cfg: TrainConfig, step: int, name: str, *, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=step, disable=not show, desc=name or cfg.preset or cfg.kind)


def _always_zero(loss_fn) -> bool:
    """True when theta- = theta at every step (CD with mu = 0, iCT): then the online net is its own target."""
    return getattr(loss_fn, "mu", None) == 0.0
