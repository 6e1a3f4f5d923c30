"""Independent runs trained side by side: one process and one CPU thread each, instead of one after another.

Why: a toy step is a few small matrix products (MLP 256 x 4, batch 512) that a second thread speeds up only
about 1.4x (``toy-ict``: 53.8 against 38.5 steps/s on the 2-core machine); two runs side by side, one thread
each, got through 1.43x the run-steps of the same runs one after another with two threads (92.0 against 64.1
run-steps/s, ``python benchmarks/side_by_side.py``; 1.37x for the digits UNet).

A ``Job`` is a picklable call (a top-level function, or ``functools.partial`` of one) that trains into the run
cache, and the run directories it writes. ``side_by_side`` skips jobs whose runs are finished, runs the rest in
fresh ``spawn`` processes with ``torch.set_num_threads(threads)``, and shows one progress bar per run (read from
its ``metrics.jsonl``); the caller then loads the runs with the usual ``train_or_load``. Ctrl-C terminates the
workers, and a worker that dies is reported, not waited for; a run stopped mid-way resumes from its last
checkpoint, as any run does. ``workers=1`` runs the jobs here, one after another: the same calls, no processes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from cmlearn.train.cache import is_finished, pretrained_dir, run_dir, train_or_load
from cmlearn.train.config import TrainConfig


@dataclass
class Job:
    """``call()`` trains ``runs`` [(run_dir, steps), ...] into the cache; done when each is finished with the
    files ``needs`` beside it."""

    call: Callable[[], object]
    runs: Sequence[tuple[Path, int]] = field(default_factory=list)
    needs: tuple[str, ...] = ()

    def done(self) -> bool:
        return bool(self.runs) and all(is_finished(d, steps, self.needs) for d, steps in self.runs)


def chain(*jobs: Job) -> Job:
    """One Job that runs ``jobs`` one after another in the same worker (e.g. a teacher, then CD from it)."""
    needs = {n for job in jobs for n in job.needs}
    if any(set(job.needs) != needs for job in jobs):
        raise ValueError(f"chained jobs must need the same files, got {[job.needs for job in jobs]}")
    return Job(partial(_call_all, [job.call for job in jobs]), runs=[r for job in jobs for r in job.runs],
               needs=tuple(sorted(needs)))


def _call_all(calls: Sequence[Callable[[], object]]) -> None:
    for call in calls:
        call()


def train_job(cfg: TrainConfig, name: str, *, cache: str | Path | None = None) -> Job:
    """A Job that ``train_or_load``s ``cfg`` into CACHE/NAME-HASH (no progress bar in the worker)."""
    out = pretrained_dir(cfg) or run_dir(cfg, name, cache=cache)  # where train_or_load will find it
    return Job(partial(_train_or_load_quietly, cfg, name, cache), runs=[(out, cfg.steps)])


def _train_or_load_quietly(cfg: TrainConfig, name: str, cache: str | Path | None) -> None:
    train_or_load(cfg, name, cache=cache, progress=False)


def default_workers(n_jobs: int) -> int:
    """Jobs run at once: one per CPU core this process may use (``CMLEARN_WORKERS`` overrides), at most
    ``n_jobs``, at least 1. Raises ValueError for a CMLEARN_WORKERS that is not a positive integer."""
    env = os.environ.get("CMLEARN_WORKERS")
    if env is not None:
        if not env.strip().isdigit() or int(env) < 1:
            raise ValueError(f"CMLEARN_WORKERS must be a positive integer, got {env!r}")
        cores = int(env)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n_jobs))


def side_by_side(jobs: Mapping[str, Job], *, workers: int | None = None, threads: int = 1,
                 progress: bool | None = None) -> list[str]:
    """Run the unfinished ``jobs`` {label: Job}, ``workers`` at a time (default ``default_workers``), each in
    its own process with ``threads`` threads; returns the labels that ran. Raises ValueError for workers or
    threads < 1, RuntimeError naming the first job that failed (its exception chained)."""
    todo = {label: job for label, job in jobs.items() if not job.done()}
    workers = default_workers(len(todo)) if workers is None else workers
    if workers < 1 or threads < 1:
        raise ValueError(f"workers and threads must be >= 1, got workers={workers}, threads={threads}")
    if not todo:
        return []
    if workers == 1:
        for label, job in todo.items():
            _run(job.call, label)
        return list(todo)
    from cmlearn.train.loop import _interactive

    show = _interactive() if progress is None else progress
    print(f"training {len(todo)} jobs side by side ({', '.join(todo)}): {workers} processes, {threads} "
          f"thread(s) each", flush=True)
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=torch.set_num_threads,
                               initargs=(threads,))
    bars: dict = {}
    finished = False
    try:
        pending = {label: pool.submit(job.call) for label, job in todo.items()}
        bars = {Path(d): _bar(f"{label}: {Path(d).name}", steps, show)
                for label, job in todo.items() for d, steps in job.runs}
        t0, reported = time.perf_counter(), set()
        while len(reported) < len(pending):
            time.sleep(0.5)
            for d, bar in bars.items():
                bar.update(max(0, min(bar.total, _last_step(d)) - bar.n))
            for label, f in pending.items():
                if f.done() and label not in reported:
                    reported.add(label)
                    print(f"  {label}: {'FAILED' if f.exception() else 'done'} after "
                          f"{time.perf_counter() - t0:.0f} s", flush=True)
        finished = True  # every job has ended (well or not): nothing to stop
        for label, f in pending.items():
            _run(f.result, label)  # a worker that died (killed, out of memory) raises BrokenProcessPool here
        return list(todo)
    finally:
        for bar in bars.values():
            bar.close()
        if not finished:  # Ctrl-C while jobs run: stop the workers (their runs resume from their checkpoints)
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


def _run(call: Callable[[], object], label: str):
    try:
        return call()
    except Exception as e:
        raise RuntimeError(f"side-by-side job {label!r} failed: {type(e).__name__}: {e}") from e


def _last_step(run_dir: Path) -> int:
    """The last logged step in a run directory's metrics.jsonl (0 when there is none yet)."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text().strip().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def _bar(desc: str, total: int, show: bool):
    """A progress bar over a run's steps, as ``cmlearn.train.loop`` shows one; hidden when not ``show``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show)
