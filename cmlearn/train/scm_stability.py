"""sCM's instability, reproduced on a toy: the tangent norm ||g|| over a short sCT run, with or without tangent
normalization, half-precision time input or a high-frequency time embedding (Lu & Song 2025, Sec. 4.1-4.2).

A plain loop (Adam on ``cfg``'s lr, no EMA) that records, at every step, the mean ||g|| before normalization and
the loss, and stops at the first non-finite value: a run that blows up shows it as a tangent norm that grows by
orders of magnitude (or a NaN), a stable one as a flat curve.
"""

from __future__ import annotations

import math

import torch

from cmlearn.train.config import TrainConfig
from cmlearn.train.continuous import continuous_loss
from cmlearn.train.runs import build_model, build_source


def tangent_trace(cfg: TrainConfig, *, steps: int, seed: int = 0) -> dict:
    """{"tangent_norm": [...], "loss": [...], "blew_up_at": step or None} for ``steps`` sCT/sCD steps of ``cfg``."""
    if cfg.kind not in ("sct", "scd"):
        raise ValueError(f"tangent_trace needs an sCM config (kind sct or scd), got kind={cfg.kind!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got steps={steps}")
    torch.manual_seed(seed)
    source = build_source(cfg)
    model = build_model(cfg, shape=source.shape)
    teacher = None
    if cfg.kind == "scd":
        from cmlearn.train.runs import build_teacher

        teacher = build_teacher(cfg, source, torch.device("cpu"))
    loss_fn = continuous_loss(cfg, teacher)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    out: dict = {"tangent_norm": [], "loss": [], "blew_up_at": None}
    for k in range(steps):
        loss = loss_fn(model, model, source.batch(cfg.batch_size, gen), k=k, generator=gen).mean()
        out["tangent_norm"].append(loss_fn.last_tangent_norm)
        out["loss"].append(float(loss.detach()))
        if not (math.isfinite(out["loss"][-1]) and math.isfinite(loss_fn.last_tangent_norm)):
            out["blew_up_at"] = k
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return out
