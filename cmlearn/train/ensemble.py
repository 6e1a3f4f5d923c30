"""Several small CD / CT / iCT runs trained at once as one batched ensemble (``torch.func.stack_module_state`` +
``vmap``): one network call per step for all members instead of one per run, e.g. notebook 04's N x solver grid.

Each member draws its data and noise from its own generator, in the same order as ``cmlearn.train.loop.train``
(the batch, then the loss's index and z: ``ConsistencyLoss.draw``), starts from the same initial weights, and its
optimizer (RAdam / Adam: elementwise, so one optimizer over the stacked weights is K independent ones), target EMA
(Alg. 2/3, its own mu(k)) and eval EMA do what the lone run does: a member trains like a lone run up to float
rounding (tests/test_ensemble.py), and is written as a normal run directory that ``load_run`` reads.
Members may differ only in the loss's settings (``VARYING``); an interrupted ensemble restarts from step 0.
Whether it is faster depends on the machine: ``benchmarks/ensemble_speed.py`` measures it side by side.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state, vmap

from cmlearn.train.cache import is_finished, pretrained_dir, run_dir, train_or_load
from cmlearn.train.config import TrainConfig
from cmlearn.train.distributed import resolve_device
from cmlearn.train.loop import _bar, init_model, learning_rate, log_record, make_loss, save
from cmlearn.train.runs import Run, build_source, build_teacher, load_run

VARYING = frozenset({"kind", "N", "solver", "mu", "distance", "weighting", "ct_fixed_N", "ct_fixed_mu", "s0", "s1",
                     "mu0", "official_mu", "p_mean", "p_std", "seed", "teacher", "preset",
                     "stable_target", "stable_ref", "huber_c"})
"""The settings members may differ in (the loss's); everything else (network, batch, steps, optimizer, EMA) is
shared."""


def check_members(cfgs: Sequence[TrainConfig]) -> None:
    """ValueError unless ``cfgs`` can train as one ensemble: CD/CT/iCT on points, no dropout, no accumulation or
    gradient clipping, no init_from, and equal in every setting outside ``VARYING`` (the first one is named)."""
    if not cfgs:
        raise ValueError("an ensemble needs at least one config")
    first = cfgs[0].to_dict()
    for cfg in cfgs:
        if cfg.kind not in ("cd", "ct", "ict"):
            raise ValueError(f"ensembles train consistency models (kind cd, ct, ict), got kind={cfg.kind!r}")
        for key, value in cfg.to_dict().items():
            if key not in VARYING and value != first[key]:
                raise ValueError(f"ensemble members must share {key!r} (only {sorted(VARYING)} may differ): "
                                 f"{first[key]!r} vs {value!r}")
    c = cfgs[0]
    if c.net != "mlp" or c.net_kwargs.get("dropout", 0) or c.grad_accum != 1 or c.grad_clip > 0 or c.init_from:
        raise ValueError(f"ensembles need net='mlp' without dropout, grad_accum=1, grad_clip=0, no init_from; got "
                         f"net={c.net!r}, net_kwargs={c.net_kwargs}, grad_accum={c.grad_accum}, "
                         f"grad_clip={c.grad_clip}, init_from={c.init_from!r}")


class _Members:
    """The members' sources, losses and generators, their stacked weights (online, target, eval EMA), the
    optimizer over the stacked online weights, and one vmapped network call."""

    def __init__(self, cfgs: Sequence[TrainConfig], device: torch.device):
        self.cfgs, self.device = list(cfgs), device
        self.sources = [build_source(c) for c in cfgs]
        self.shape = self.sources[0].shape
        self.losses = [make_loss(c, build_teacher(c, s, device) if c.kind == "cd" else None)
                       for c, s in zip(cfgs, self.sources)]
        self.gens = [torch.Generator().manual_seed(c.seed * 1000) for c in cfgs]  # slot 0 of a lone run
        models = [init_model(c, self.shape, device, channels_last=False) for c in cfgs]
        self.params, self.buffers = stack_module_state(models)
        self.target = {k: v.detach().clone() for k, v in self.params.items()}
        self.ema = {k: v.detach().clone() for k, v in self.params.items()}
        self.template = copy.deepcopy(models[0]).requires_grad_(False)
        self.base = copy.deepcopy(models[0]).to("meta")
        opt_cls = torch.optim.RAdam if cfgs[0].optimizer == "radam" else torch.optim.Adam
        self.opt = opt_cls(list(self.params.values()), lr=cfgs[0].lr)
        self.call = vmap(lambda p, b, x, t: functional_call(self.base, (p, b), (x, t)))

    def loss(self, step: int) -> torch.Tensor:
        """Each member's mean loss (K,) at ``step``: its own draws, one vmapped call for online and target."""
        drawn = []
        for source, loss_fn, gen, cfg in zip(self.sources, self.losses, self.gens, self.cfgs):
            x0 = source.batch(cfg.batch_size, gen).to(self.device)
            ref = source.batch(cfg.stable_ref, gen).to(self.device) if cfg.stable_ref else None  # as the loop does
            drawn.append(loss_fn.draw(x0, k=step, generator=gen, reference=ref))
        x1, t1, x2, t2, lam = (torch.stack(z) for z in zip(*drawn))
        out = self.call(self.params, self.buffers, x1, t1)
        with torch.no_grad():
            tgt = self.call(self.target, self.buffers, x2, t2)
        return torch.stack([(lam[i] * f.d(out[i], tgt[i])).mean() for i, f in enumerate(self.losses)])

    @torch.no_grad()
    def update_averages(self, step: int) -> None:
        """theta- <- mu(k) theta- + (1 - mu(k)) theta per member (Alg. 2/3); eval EMA with the shared decay."""
        w = torch.tensor([1.0 - f.target_decay(step) for f in self.losses])
        for key, p in self.params.items():
            self.target[key].lerp_(p, w.view(-1, *[1] * (p.ndim - 1)).to(p))
        torch._foreach_lerp_(list(self.ema.values()), list(self.params.values()), 1.0 - self.cfgs[0].ema_decay)

    def member(self, i: int, step: int) -> dict:
        """Member ``i`` as the parts a lone run checkpoints: model, ema, target (None when mu = 0) and optimizer."""
        cfg, parts = self.cfgs[i], {}
        for name, stacked in (("model", self.params), ("ema", self.ema), ("target", self.target)):
            m = copy.deepcopy(self.template)
            for key, t in [*m.named_parameters(), *m.named_buffers()]:
                t.detach().copy_((stacked if key in stacked else self.buffers)[key][i].detach())
            parts[name] = m.requires_grad_(name == "model")
        if getattr(self.losses[i], "mu", None) == 0.0:  # a lone run keeps no separate target then
            parts["target"] = None
        opt = type(self.opt)(parts["model"].parameters(), lr=learning_rate(cfg, max(step - 1, 0)))
        state = opt.state_dict()
        state["state"] = {j: {k: (v[i].clone() if v.ndim and k != "step" else v.clone()) for k, v in
                              self.opt.state[p].items()} for j, p in enumerate(self.params.values())}
        opt.load_state_dict(state)
        parts["opt"] = opt
        return parts


def train_ensemble(cfgs: Sequence[TrainConfig], out_dirs: Sequence[str | Path], *, progress: bool | None = None,
                   on_checkpoint: Callable | None = None) -> list[Path]:
    """Train ``cfgs`` together; member i is written to ``out_dirs[i]`` (config.json, checkpoints/latest.pt,
    metrics.jsonl) as ``cmlearn.train.loop.train`` would write it, and ``on_checkpoint(i, step, ema)`` is called
    for each member after each checkpoint (a lone run's ``on_checkpoint(step, ema)``, with the member's index).
    Raises FloatingPointError naming the member with a non-finite loss."""
    check_members(cfgs)
    if len(out_dirs) != len(cfgs):
        raise ValueError(f"need one out_dir per config: {len(cfgs)} configs, {len(out_dirs)} out_dirs")
    outs = [Path(o) for o in out_dirs]
    ens, steps = _Members(cfgs, resolve_device(cfgs[0])), cfgs[0].steps
    logs = []
    for out, cfg in zip(outs, cfgs):
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
        logs.append(open(out / "metrics.jsonl", "w"))
    bar = _bar(cfgs[0], 0, f"ensemble of {len(cfgs)}", show=_show() if progress is None else progress)
    sums, n, t0 = torch.zeros(len(cfgs)), 0, time.perf_counter()
    try:
        with bar:
            for step in range(steps):
                for group in ens.opt.param_groups:
                    group["lr"] = learning_rate(cfgs[0], step)
                ens.opt.zero_grad(set_to_none=True)
                losses = ens.loss(step)
                if not torch.isfinite(losses).all():
                    bad = int((~torch.isfinite(losses)).nonzero()[0])
                    raise FloatingPointError(f"member {bad} ({outs[bad].name}) has loss {float(losses[bad])} at "
                                             f"step {step}; stopped (try a lower lr, now {cfgs[0].lr:.3g})")
                losses.sum().backward()
                ens.opt.step()
                ens.update_averages(step)
                sums, n = sums + losses.detach(), n + 1
                bar.update(1)
                done = step + 1
                if done % cfgs[0].log_every == 0 or done == steps:
                    for i, log in enumerate(logs):
                        rec = log_record(cfgs[i], ens.losses[i], done, sums[i], n, time.perf_counter() - t0)
                        log.write(json.dumps(rec) + "\n")
                    sums, n, t0 = torch.zeros(len(cfgs)), 0, time.perf_counter()
                if done % cfgs[0].checkpoint_every == 0 or done == steps:
                    for i, (out, cfg) in enumerate(zip(outs, cfgs)):
                        parts = ens.member(i, done)
                        save(out / "checkpoints" / "latest.pt", cfg, parts, step=done, gens=[ens.gens[i]],
                             shape=ens.shape, rank=0, world=1, device=ens.device)
                        if on_checkpoint is not None:
                            on_checkpoint(i, done, parts["ema"].eval())
    finally:
        for log in logs:
            log.close()
    return outs


def train_or_load_ensemble(cfgs: Sequence[TrainConfig], name: str, *, cache: str | Path | None = None,
                           progress: bool | None = None, batched: bool = True, on_checkpoint: Callable | None = None,
                           needs: tuple[str, ...] = ()) -> list[Run]:
    """``cmlearn.train.cache.train_or_load`` for many configs: shipped or finished runs (CACHE/NAME-HASH, with
    the files ``needs`` beside them; a shipped run is not used when ``needs`` is given) are loaded, the rest
    (duplicates once) trained together by ``train_ensemble`` (``batched=False``: one after another by
    ``cmlearn.train.loop.train``, into the same directories); the runs in the order of ``cfgs``.
    ``on_checkpoint(path, step, ema)`` is called at each checkpoint of each trained run, ``path`` its directory."""
    dirs = [(None if needs else pretrained_dir(c)) or run_dir(c, name, cache=cache) for c in cfgs]
    todo = {}
    for cfg, d in zip(cfgs, dirs):
        if not is_finished(d, cfg.steps, needs):
            todo[d] = cfg
    paths = list(todo)
    if todo and batched:
        hook = None if on_checkpoint is None else (lambda i, step, ema: on_checkpoint(paths[i], step, ema))
        train_ensemble(list(todo.values()), paths, progress=progress, on_checkpoint=hook)
    for d, cfg in todo.items() if not batched else ():
        hook = None if on_checkpoint is None else (lambda step, ema, d=d: on_checkpoint(d, step, ema))
        train_or_load(cfg, name, cache=cache, progress=progress, on_checkpoint=hook, needs=needs)
    return [load_run(d) for d in dirs]


def _show() -> bool:
    from cmlearn.train.loop import _interactive

    return _interactive()
