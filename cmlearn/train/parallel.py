"""Independent runs trained side by side: one process and one CPU thread each, instead of one after another.

Why: a toy step is a few small matrix products (MLP 256 x 4, batch 512) that a second thread speeds up only
about 1.4x (``toy-ict``: 53.8 against 38.5 steps/s on the 2-core machine); two runs side by side, one thread
each, got through 1.43x the run-steps of the same runs one after another with two threads (92.0 against 64.1
run-steps/s, ``python benchmarks/side_by_side.py``; 1.37x for the digits UNet).

A ``Job`` is a picklable call (a top-level function, or ``functools.partial`` of one) that trains into the run
cache, and the run directories it writes. ``side_by_side`` skips jobs whose runs are finished, runs the rest in
fresh ``spawn`` processes with ``torch.set_num_threads(threads)``, and shows one progress bar per run (read from
its ``metrics.jsonl``); the caller then loads the runs with the usual ``train_or_load``. Each job has its own
process, so a job that raises or dies (killed, out of memory) is named with its exit code as soon as it ends;
Ctrl-C in the parent terminates the workers, and a worker exits when its parent dies. A run stopped mid-way resumes
from its last checkpoint, as any run does. ``workers=1`` runs the jobs here, one after another, with their usual
progress bars (``Job.here``): the same training, no processes. Jobs must be importable functions (not ones
defined in a notebook or ``__main__``); scripts that call ``side_by_side`` need ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from cmlearn.train.cache import cache_dir, is_finished, run_location, train_or_load
from cmlearn.train.config import TrainConfig


@dataclass
class Job:
    """``call()`` trains ``runs`` [(run_dir, steps), ...] into the cache quietly (in a worker); ``here()``, when
    given, does the same with progress bars (``workers=1``). Done when each run is finished with ``needs``."""

    call: Callable[[], object]
    runs: Sequence[tuple[Path, int]] = field(default_factory=list)
    needs: tuple[str, ...] = ()
    here: Callable[[], object] | None = None

    def done(self) -> bool:
        return bool(self.runs) and all(is_finished(d, steps, self.needs) for d, steps in self.runs)


def chain(*jobs: Job) -> Job:
    """One Job that runs ``jobs`` one after another in the same worker (e.g. a teacher, then CD from it)."""
    needs = {n for job in jobs for n in job.needs}
    if any(set(job.needs) != needs for job in jobs):
        raise ValueError(f"chained jobs must need the same files, got {[job.needs for job in jobs]}")
    return Job(partial(_call_all, [job.call for job in jobs]), runs=[r for job in jobs for r in job.runs],
               needs=tuple(sorted(needs)), here=partial(_call_all, [job.here or job.call for job in jobs]))


def _call_all(calls: Sequence[Callable[[], object]]) -> None:
    for call in calls:
        call()


def train_job(cfg: TrainConfig, name: str, *, cache: str | Path | None = None, retrain: bool = False) -> Job:
    """A Job that ``train_or_load``s ``cfg`` into CACHE/NAME-HASH (CACHE resolved now, as the worker may not);
    ``retrain``: train it even when the course ships a run of ``cfg``."""
    cache = Path(cache) if cache is not None else cache_dir()
    out = run_location(cfg, name, cache=cache, retrain=retrain)  # where train_or_load will find it
    return Job(partial(quietly, train_or_load, cfg, name, cache=cache, retrain=retrain), runs=[(out, cfg.steps)],
               here=partial(train_or_load, cfg, name, cache=cache, retrain=retrain))


def quietly(fn: Callable, *args, **kwargs) -> None:
    """Call ``fn(*args, progress=False, **kwargs)`` and return nothing: a worker's call (no bar in a process
    nobody watches, no result to send back)."""
    fn(*args, progress=False, **kwargs)


def default_workers(n_jobs: int) -> int:
    """Jobs run at once: one per CPU core this process may use (``CMLEARN_WORKERS`` overrides), at most
    ``n_jobs``, at least 1. Raises ValueError for a CMLEARN_WORKERS that is not a positive integer."""
    env = os.environ.get("CMLEARN_WORKERS")
    if env is not None:
        if not env.strip().isdigit() or int(env) < 1:
            raise ValueError(f"CMLEARN_WORKERS must be a positive integer, got {env!r}")
        return max(1, min(int(env), n_jobs))
    return max(1, min(_cores(), n_jobs))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def side_by_side(jobs: Mapping[str, Job], *, workers: int | None = None, threads: int | None = None,
                 progress: bool | None = None) -> list[str]:
    """Run the unfinished ``jobs`` {label: Job}, ``workers`` at a time (default ``default_workers``), each in
    its own process with ``threads`` threads (default: the cores shared among the workers); returns the labels
    that ran. Raises ValueError for workers or threads < 1, for two jobs writing one run directory, or for a job
    a worker cannot import; RuntimeError naming the first job that failed or died (with its exit code)."""
    owner: dict[Path, str] = {}
    for label, job in jobs.items():
        for d, _ in job.runs:
            if Path(d) in owner:
                raise ValueError(f"jobs {owner[Path(d)]!r} and {label!r} both write {d}: train it once")
            owner[Path(d)] = label
    todo = {label: job for label, job in jobs.items() if not job.done()}
    workers = default_workers(len(todo)) if workers is None else workers
    threads = max(1, _cores() // max(workers, 1)) if threads is None else threads
    if workers < 1 or threads < 1:
        raise ValueError(f"workers and threads must be >= 1, got workers={workers}, threads={threads}")
    if not todo:
        return []
    if workers == 1:
        print(f"training {', '.join(todo)} here, one after another", flush=True)
        for label, job in todo.items():
            _run_here(job.here or job.call, label)
        return list(todo)
    for label, job in todo.items():
        _check_importable(job.call, label)
    from cmlearn.train.loop import _interactive

    show = _interactive() if progress is None else progress
    print(f"training {len(todo)} jobs side by side ({', '.join(todo)}): {workers} processes, {threads} "
          f"thread(s) each", flush=True)
    ctx, queue, running = mp.get_context("spawn"), list(todo), {}
    bars = {Path(d): _bar(f"{label}: {Path(d).name}", steps, show) for label, job in todo.items()
            for d, steps in job.runs}
    t0, failure = time.perf_counter(), None
    try:
        while queue or running:
            while queue and len(running) < workers and failure is None:
                label = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(todo[label].call, threads, send), name=label)
                proc.start()
                send.close()
                running[label] = (proc, recv)
            if failure is not None and not running:
                break
            time.sleep(0.5)
            for d, bar in bars.items():
                bar.n = max(0, min(bar.total, _last_step(d)))  # may go back: a run that restarts from step 0
                bar.refresh()
            for label, (proc, recv) in list(running.items()):
                if proc.is_alive():
                    continue
                proc.join()
                error = _message(recv)
                del running[label]
                if proc.exitcode == 0 and error is None:
                    print(f"  {label}: done after {time.perf_counter() - t0:.0f} s", flush=True)
                elif failure is None:
                    why = error or f"its process died with exit code {proc.exitcode} (negative: killed by a " \
                                    f"signal; -9 is often out of memory)"
                    failure = RuntimeError(f"side-by-side job {label!r} failed: {why}")
                    queue.clear()  # start nothing new; let the running jobs finish their runs
                    print(f"  {label}: FAILED after {time.perf_counter() - t0:.0f} s", flush=True)
        if failure is not None:
            raise failure
        return list(todo)
    finally:
        for bar in bars.values():
            bar.close()
        for proc, _ in running.values():  # Ctrl-C or an error while jobs run: stop them (their runs resume)
            proc.terminate()
            proc.join()


def _worker(call: Callable[[], object], threads: int, send) -> None:
    """A worker process: ``threads`` threads, exit when the parent dies, report an exception through ``send``."""
    torch.set_num_threads(threads)
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(70)), daemon=True).start()
    try:
        call()
    except BaseException as e:  # noqa: BLE001 - reported to the parent, then the worker exits non-zero
        send.send(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}")
        send.close()
        raise SystemExit(1) from None


def _message(recv) -> str | None:
    """The error a worker sent before exiting, or None (it sent nothing and closed its end)."""
    try:
        return recv.recv() if recv.poll() else None
    except EOFError:
        return None


def _check_importable(call: Callable, label: str) -> None:
    """ValueError unless a fresh process can import ``call``'s function (not a lambda, nor from __main__)."""
    fn = call
    while isinstance(fn, partial):
        fn = fn.func
    name, module = getattr(fn, "__qualname__", repr(fn)), getattr(fn, "__module__", None)
    if module in (None, "__main__") or "<" in name:
        raise ValueError(f"job {label!r}: {name} (module {module}) cannot be imported by a worker process; "
                         "define it in a module, or pass workers=1 to train here")


def _run_here(call: Callable[[], object], label: str):
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
