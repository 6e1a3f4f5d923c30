"""How long the course takes: every notebook executed with a cold run cache (wall and CPU seconds), and the toy
training loop's steps/s beside a bare PyTorch loop and beside the machine's FLOP-rate limit, side by side in one run.

    python benchmarks/course_time.py                      # full mode (what students run), every notebook
    python benchmarks/course_time.py --fast               # fast mode (CMLEARN_FAST=1, what make test runs)
    python benchmarks/course_time.py --notebooks 00,01    # a subset
    python benchmarks/course_time.py --no-notebooks       # only the loop speed
    python benchmarks/course_time.py --cache DIR          # course order: the notebooks share one run cache
    python benchmarks/course_time.py --write-docs         # notebook headers + README table from the JSON

Times are measured with ``--threads`` threads (default 2, a laptop's cores) and written to
``--json`` (default benchmarks/course_time.json, merged per mode), the one source of the README's course table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(path: Path, *, fast: bool, threads: int, timeout: int, shared: Path | None = None) -> dict:
    """Execute one notebook in a fresh kernel; wall and CPU seconds (kernel included). Its CMLEARN_CACHE is empty,
    or ``shared``: one cache the notebooks run before it (in course order, from an empty start) have filled, as a
    student's ``runs/`` is when they reach it."""
    import contextlib

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    warm = bool(shared) and Path(shared).is_dir() and any(Path(shared).iterdir())  # else it starts empty: cold
    with (contextlib.nullcontext(str(shared)) if shared else tempfile.TemporaryDirectory()) as cache:
        env = {"CMLEARN_CACHE": cache, "CMLEARN_FAST": "1" if fast else "0", "OMP_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads), "MPLBACKEND": "Agg"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        before, load0 = resource.getrusage(resource.RUSAGE_CHILDREN), os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            meta = {"metadata": {"path": str(path.parent)}}
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=meta).execute()
            ok = True
        except Exception as err:  # report the failure in the table, keep measuring the rest
            ok, error = False, f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res = {"notebook": path.stem, "mode": "fast" if fast else "full", "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "ok": ok, "threads": threads, "load": round((load0 + os.getloadavg()[0]) / 2, 2),
           "date": time.strftime("%Y-%m-%d", time.gmtime()), "cache": "shared" if warm else "cold"}
    if not ok:
        res["error"] = error
    res["slowest"] = slowest_cells(nb)
    return res


def slowest_cells(nb, *, n: int = 4) -> list[tuple[int, float, str]]:
    """The ``n`` code cells that took longest, as (index, seconds, first line), from nbclient's execution times."""
    from datetime import datetime

    cells = []
    for i, cell in enumerate(nb.cells):
        times = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in times and "shell.execute_reply" in times:
            t0, t1 = (datetime.fromisoformat(times[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
            cells.append((i, round((t1 - t0).total_seconds(), 1), (cell.source.strip().splitlines() or [""])[0][:60]))
    return sorted(cells, key=lambda c: -c[1])[:n]


# ---------------------------------------------------------------- the docs, written from the measured numbers

MARK = "**Measured time**"
"""The paragraph of each notebook's header cell that ``--write-docs`` owns (and tests/test_course_time.py checks)."""


def fmt_seconds(s: float) -> str:
    """17 s, 7.1 min."""
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def measured(entry: dict | None, *, mark: bool = True) -> str:
    """'18 s / 14 s' (wall / CPU) for a measured entry, 'not measured' otherwise; a failed run says so; with
    ``mark``, a † marks a run in course order, whose run cache the notebooks before it filled (``--cache``)."""
    if not entry:
        return "not measured"
    text = f"{fmt_seconds(entry['wall_s'])} / {fmt_seconds(entry['cpu_s'])}"
    text += " †" if mark and entry.get("cache") == "shared" else ""  # the README's table note explains it
    return text if entry.get("ok", True) else text + " (failed)"


def header_line(stem: str, data: dict) -> str:
    """The notebook header's time paragraph: both modes' wall / CPU times, threads, load and date, from ``data``."""
    parts = []
    for mode in ("full", "fast"):
        e = data.get(mode, {}).get(stem)
        threads = f"{e['threads']} thread" + ("s" if e["threads"] != 1 else "") if e and "load" in e else ""
        shared = ", run cache from the notebooks before it" if e and e.get("cache") == "shared" else ", empty run cache"
        when = f" ({threads}, load {e['load']:g}, {e['date']}{shared})" if threads else ""
        parts.append(f"{mode} mode {measured(e, mark=False)}{when}")
    text = (f"{MARK} (wall / CPU, `python benchmarks/course_time.py`): " + "; ".join(parts)
            + ". The load is the machine's load average while it ran (this run included): above the thread count, "
            "other work shared the cores and both times are upper bounds.")
    return textwrap.fill(text, width=116, break_long_words=False, break_on_hyphens=False)


def readme_cells(stem: str, data: dict) -> tuple[str, str]:
    """The README course table's full and fast cells of notebook ``stem``."""
    return measured(data.get("full", {}).get(stem)), measured(data.get("fast", {}).get(stem))


def write_docs(data: dict, *, root: Path = ROOT) -> list[str]:
    """Rewrite every notebook header's time paragraph and the README course table's time cells from ``data``;
    returns the notebooks whose README row is missing (add one by hand: the row names what the notebook teaches)."""
    import re

    stems = [p.stem for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    for stem in stems:
        path = root / "notebooks" / f"{stem}.ipynb"
        nb = json.loads(path.read_text())
        head = "".join(nb["cells"][0]["source"]).rstrip("\n")
        paras = [q for q in head.split("\n\n") if not q.startswith(MARK)] + [header_line(stem, data)]
        lines = "\n\n".join(paras).split("\n")
        nb["cells"][0]["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    readme = root / "README.md"
    text, missing = readme.read_text(), []
    for stem in stems:
        row = re.compile(rf"^(\| `{stem}` \|[^\n]*?\|)[^|\n]*\|[^|\n]*\|$", re.M)
        if not row.search(text):
            missing.append(stem)
            continue
        full, fast = readme_cells(stem, data)
        text = row.sub(lambda m, cells=f"{full} | {fast}": f"{m.group(1)} {cells} |", text)
    readme.write_text(text)
    return missing


def matmul_gflops(*, threads: int, n: int = 1024, repeats: int = 20) -> float:
    """The machine's fp32 matmul rate (GFLOP/s) with ``threads`` threads: the ceiling for the MLP's work."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def toy_step_flops(cfg) -> float:
    """FLOPs of one toy-cd training step (online forward + backward, target forward, teacher excluded: it is the
    exact score), counted by torch's FlopCounterMode on the real loss."""
    from torch.utils.flop_counter import FlopCounterMode

    from cmlearn.train.loop import make_loss
    from cmlearn.train.runs import build_model, build_source, build_teacher, frozen_copy

    source = build_source(cfg)
    model = build_model(cfg, shape=source.shape)
    target = frozen_copy(model)
    loss_fn = make_loss(cfg, build_teacher(cfg, source, torch.device("cpu")))
    gen = torch.Generator().manual_seed(0)
    x0 = source.batch(cfg.batch_size, gen)
    with FlopCounterMode(display=False) as counter:
        loss_fn(model, target, x0, k=0, generator=gen).mean().backward()
    return float(counter.get_total_flops())


def loop_speed(*, threads: int, steps: int, rounds: int) -> dict:
    """cmlearn's loop vs the same step in bare PyTorch (benchmarks/toy_sampling.py), and vs the FLOP limit."""
    spec = importlib.util.spec_from_file_location("toy_sampling", ROOT / "benchmarks" / "toy_sampling.py")
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    from cmlearn.train.presets import get_preset

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        cmp = toy.loop_comparison(Path(out), steps=steps, rounds=rounds)
    cfg = get_preset("toy-cd")
    flops, rate = toy_step_flops(cfg), matmul_gflops(threads=threads)
    limit = rate * 1e9 / flops
    return {**cmp, "threads": threads, "gflop_per_step": flops / 1e9, "matmul_gflops": rate,
            "flop_limit_steps_per_s": limit, "fraction_of_limit": cmp["cmlearn"] / limit}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--fast", action="store_true", help="fast mode (CMLEARN_FAST=1)")
    p.add_argument("--notebooks", help="comma-separated numbers, e.g. 00,01 (default: all)")
    p.add_argument("--no-notebooks", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=int, default=7200, help="seconds per cell")
    p.add_argument("--loop-steps", type=int, default=800)
    p.add_argument("--loop-rounds", type=int, default=3)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "course_time.json"))
    p.add_argument("--cache", type=Path, help="one run cache shared by the notebooks, run in course order (created if "
                   "missing, kept afterwards; start from an empty folder for the course's cold start); default: each "
                   "notebook gets its own empty temporary cache")
    p.add_argument("--write-docs", action="store_true",
                   help="measure nothing: rewrite the notebook headers' and README's times from --json")
    a = p.parse_args(argv)
    if a.write_docs:
        data = json.loads(Path(a.json).read_text())
        missing = write_docs(data)
        print("notebook headers and README course table rewritten from " + a.json
              + (f"; README rows missing for {missing}" if missing else ""))
        return data
    rows = []
    if a.cache:
        a.cache.mkdir(parents=True, exist_ok=True)
    if not a.no_notebooks:
        wanted = set(a.notebooks.split(",")) if a.notebooks else None
        for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            if wanted is None or path.stem[:2] in wanted:
                rows.append(run_notebook(path, fast=a.fast, threads=a.threads, timeout=a.timeout, shared=a.cache))
                r = rows[-1]
                print(f"{r['notebook']}: {r['mode']} {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU"
                      + ("" if r["ok"] else f"  FAILED {r['error']}"), flush=True)
                print("  slowest cells: " + "; ".join(f"[{i}] {t:.0f} s {line!r}" for i, t, line in r["slowest"]))
                store(Path(a.json), [r], None)  # kept as it goes: a later failure or timeout loses nothing
    speed = loop_speed(threads=a.threads, steps=a.loop_steps, rounds=a.loop_rounds) if a.loop_steps else None
    if speed:
        speed["load"] = round(os.getloadavg()[0], 2)  # the 1-minute load average as it ended
    print(f"\n| notebook | mode | wall | CPU ({a.threads} threads) |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['notebook']} | {r['mode']} | {r['wall_s'] / 60:.1f} min | {r['cpu_s'] / 60:.1f} min |"
              + ("" if r["ok"] else " FAILED |"))
    if speed:
        print(f"\ntoy-cd loop ({a.threads} threads, batch {speed['batch']}): cmlearn {speed['cmlearn']:.1f} steps/s, "
              f"bare PyTorch {speed['bare']:.1f} steps/s (ratio {speed['ratio']:.2f}); "
              f"{speed['gflop_per_step']:.2f} GFLOP/step at the machine's {speed['matmul_gflops']:.0f} GFLOP/s "
              f"matmul rate = a limit of {speed['flop_limit_steps_per_s']:.0f} steps/s; cmlearn reaches "
              f"{100 * speed['fraction_of_limit']:.0f}% of it")
    return store(Path(a.json), [], speed)


def store(path: Path, rows: list[dict], speed: dict | None) -> dict:
    """Merge measured notebook rows (per mode) and the loop speed into the JSON at ``path``; returns its content."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("machine", f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    for r in rows:
        data.setdefault(r["mode"], {})[r["notebook"]] = {k: r[k] for k in ("wall_s", "cpu_s", "ok", "threads", "load",
                                                                            "date", "cache")}
    if speed:
        data["toy_loop"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in speed.items()}
    if rows or speed:
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
