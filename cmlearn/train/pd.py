"""Progressive distillation (Salimans & Ho 2022) as rounds of ``train()``: pd_start -> pd_start / 2 -> ... -> pd_nfe.

Round r trains a student of n steps (``kind="pd"``, ``pd_nfe=n``, ``cmlearn.core.pd.PDLoss``) from the previous
round's EMA weights, with that round as its teacher; the first round's teacher is ``cfg.teacher``, the same
teacher CD distills: an EDM RUN_DIR (the student starts from its weights) or a toy's exact denoiser (from scratch).
``cfg.steps`` is the number of steps of EACH round. Layout of OUT:

    OUT/                  the last round (pd_nfe steps): ``cmlearn sample OUT``, ``load_run(OUT)``
    OUT/rounds/pd-0016/   an earlier round (16 steps), and so on for every halving

A round whose directory holds a finished run of the same config is skipped; an interrupted one resumes.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from cmlearn.core.sampling import prior_noise
from cmlearn.core.solvers import euler_sampler, nfe_sigmas
from cmlearn.train.cache import cache_dir, run_dir
from cmlearn.train.config import TrainConfig
from cmlearn.train.runs import Run, load_run


def pd_rounds(cfg: TrainConfig) -> list[int]:
    """The students' numbers of steps, one per round: [pd_start / 2, pd_start / 4, ..., pd_nfe]."""
    if cfg.kind != "pd":
        raise ValueError(f"progressive distillation needs kind='pd', got kind={cfg.kind!r}")
    n, out = cfg.pd_start or 2 * cfg.pd_nfe, []
    while n > cfg.pd_nfe:
        n //= 2
        out.append(n)
    return out


def round_config(cfg: TrainConfig, nfe: int, teacher: str) -> TrainConfig:
    """The config of the round whose student takes ``nfe`` steps, distilling ``teacher``: a RUN_DIR (the student
    starts from its weights) or, in the first round only, "exact" / "empirical" (the student starts from scratch)."""
    if teacher in ("exact", "empirical"):
        return cfg.override({"pd_nfe": nfe, "pd_start": 2 * nfe, "teacher": teacher, "init_from": ""})
    net = TrainConfig.load(Path(teacher) / "config.json")  # the student IS its teacher's network (dropout aside)
    kwargs = {k: v for k, v in net.net_kwargs.items() if k != "dropout"}
    if "dropout" in cfg.net_kwargs:
        kwargs["dropout"] = cfg.net_kwargs["dropout"]
    return cfg.override({"pd_nfe": nfe, "pd_start": 2 * nfe, "teacher": teacher, "init_from": "teacher",
                         "net": net.net, "net_kwargs": kwargs})


def round_dirs(cfg: TrainConfig, out_dir: str | Path) -> dict[int, Path]:
    """{student steps: its run directory} for every round, the last one at ``out_dir`` itself."""
    out, rounds = Path(out_dir), pd_rounds(cfg)
    return {n: out if n == rounds[-1] else out / "rounds" / f"pd-{n:04d}" for n in rounds}


def _finished(path: Path, cfg: TrainConfig) -> bool:
    from cmlearn.train.checkpoint import load_checkpoint

    ckpt = path / "checkpoints" / "latest.pt"
    if not ckpt.exists() or TrainConfig.load(path / "config.json") != cfg:
        return False
    return load_checkpoint(ckpt)["step"] >= cfg.steps


def train_pd(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = True, progress: bool | None = None) -> Path:
    """Run every round of ``cfg`` (kind "pd") into ``out_dir`` (module doc); returns ``out_dir``.

    ``cfg.teacher``: the RUN_DIR of an EDM run, or "exact" (a 2D preset's exact denoiser) / "empirical" (that of
    the data set), as for CD. Raises ValueError for anything else."""
    from cmlearn.train.loop import train

    exact = cfg.teacher in ("exact", "empirical")
    if not exact and not (Path(cfg.teacher) / "config.json").exists():
        raise ValueError(f"PD's teacher must be exact, empirical or the RUN_DIR of an EDM run (e.g. `cmlearn train "
                         f"toy-edm --out runs/toy-edm`), got teacher={cfg.teacher!r}")
    teacher = cfg.teacher if exact else str(Path(cfg.teacher).resolve())
    for nfe, path in round_dirs(cfg, out_dir).items():
        rc = round_config(cfg, nfe, teacher)
        if not (resume and _finished(path, rc)):
            train(rc, path, resume=resume, progress=progress)
        teacher = str(path.resolve())
    return Path(out_dir)


def load_rounds(cfg: TrainConfig, out_dir: str | Path, *, device: torch.device | str = "cpu") -> dict[int, Run]:
    """{student steps: Run} of every round of a finished ``train_pd(cfg, out_dir)``, most steps first."""
    return {n: load_run(path, device=device) for n, path in round_dirs(cfg, out_dir).items()}


def pd_train_or_load(cfg: TrainConfig, name: str, *, cache: str | Path | None = None,
                     progress: bool | None = None) -> dict[int, Run]:
    """``train_or_load`` for PD: CACHE/NAME-HASH holds all rounds of ``cfg``; returns {student steps: Run}."""
    out = run_dir(cfg, name, cache=cache)
    train_pd(cfg, out, progress=progress)
    return load_rounds(cfg, out)


@torch.no_grad()
def generate_pd(run: Run, n: int, *, generator: torch.Generator | None = None, seed: int = 0) -> torch.Tensor:
    """(n, *run.shape) samples of a PD student: DDIM (Euler) on its own grid of ``cfg.pd_nfe`` steps."""
    cfg = run.cfg
    if cfg.kind != "pd":
        raise ValueError(f"{run.path} is a {cfg.kind!r} run, not a PD student")
    gen = torch.Generator().manual_seed(seed) if generator is None else generator
    p = next(run.model.parameters())
    x_T = prior_noise(n, run.shape, sigma=cfg.T, generator=gen).to(p)
    return euler_sampler(run.model, x_T, nfe_sigmas("euler", cfg.pd_nfe, eps=cfg.eps, T=cfg.T, rho=cfg.rho))


def pd_job(cfg: TrainConfig, name: str, *, cache: str | Path | None = None):
    """A ``cmlearn.train.parallel.Job`` for ``side_by_side``: ``pd_train_or_load`` of ``cfg`` in a worker, done when
    every round in CACHE/NAME-HASH is finished (CACHE resolved now, as the worker may not)."""
    from cmlearn.train.parallel import Job, quietly

    cache = Path(cache) if cache is not None else cache_dir()
    rounds = round_dirs(cfg, run_dir(cfg, name, cache=cache))
    return Job(partial(quietly, pd_train_or_load, cfg, name, cache=cache),
               runs=[(path, cfg.steps) for path in rounds.values()],
               here=partial(pd_train_or_load, cfg, name, cache=cache))
