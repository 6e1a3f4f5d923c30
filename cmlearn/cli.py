"""The ``cmlearn`` command: demo, train, sample, evaluate, import-checkpoint (also ``python -m cmlearn``, and under
torchrun)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cmlearn", description="Consistency models, from 2D toys to CIFAR-10.")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="exact-score PF ODE figures, then toy-cd (shipped, or --train) against its teacher")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--train", action="store_true", help="train the full toy-cd run (minutes) instead of loading it")

    from cmlearn.train.presets import PRESETS

    t = sub.add_parser("train", help="train a preset into --out RUN_DIR (default runs/PRESET)")
    t.add_argument("preset", help="one of: " + ", ".join(sorted(PRESETS)))
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. lr=1e-3 mu=0.9")
    t.add_argument("--data", help="an (n, d) float array saved with numpy.save (toy presets)")
    t.add_argument("--data-root", help="CIFAR-10 root directory (holds cifar-10-batches-py/)")
    t.add_argument("--teacher", help="CD and PD teacher: exact | empirical | an EDM RUN_DIR (ECT: its init_from)")
    t.add_argument("--out", help="run directory (default runs/PRESET)")
    t.add_argument("--steps", type=int, help="number of training steps")
    t.add_argument("--size", default="full", help="preset size (e.g. smoke for the CIFAR-10 presets)")
    t.add_argument("--no-resume", action="store_true", help="start over even if RUN_DIR has a checkpoint")

    s = sub.add_parser("sample", help="draw samples with a run's EMA weights")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--steps", type=int, default=1, help="number of model calls (Algorithm 1)")
    s.add_argument("--ts", help="comma-separated decreasing times of the calls, e.g. 80,0.585 (overrides --steps)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampler", choices=["euler", "heun", "dpmpp-2m", "unipc"],
                   help="EDM teacher runs: the ODE sampler on the Karras grid (default: heun with N = 18)")
    s.add_argument("--nfe", type=int, help="EDM teacher runs: the network calls --sampler spends (default 34)")
    s.add_argument("--out", required=True, help="FILE.npy (array) or FILE.png (figure)")

    e = sub.add_parser("evaluate", help="print the preset's quality metric for RUN_DIR")
    e.add_argument("run_dir")
    e.add_argument("--n", type=int, default=None, help="number of samples")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--inception-weights", help="CIFAR-10 FID: a local Inception weights file instead of the download")

    i = sub.add_parser("import-checkpoint", help="turn a released CIFAR-10 checkpoint (Flax msgpack) into RUN_DIR")
    i.add_argument("file", help="e.g. cd-lpips/checkpoints/checkpoint_80 of openai/consistency_models_cifar10")
    i.add_argument("--out", required=True, help="the run directory to write")
    i.add_argument("--preset", choices=["cifar10-edm", "cifar10-cd", "cifar10-ct"], help="default: detected")
    i.add_argument("--distance", choices=["l1", "l2", "lpips"], help="CD/CT metric (default: from the path)")
    return p


def cmd_train(a) -> int:
    from cmlearn.data.sources import load_points
    from cmlearn.train.cache import checkpoint_step
    from cmlearn.train.loop import train
    from cmlearn.train.presets import get_preset

    cfg = get_preset(a.preset, size=a.size)
    over = dict(kv.split("=", 1) if "=" in kv else (kv, None) for kv in a.overrides)
    if a.data:
        if cfg.net != "mlp":
            raise ValueError(f"--data takes a point cloud for the toy presets; {a.preset} trains on {cfg.data}")
        load_points(a.data)  # fail early, before anything is built
        over["data"] = "file:" + str(Path(a.data).resolve())
    if a.data_root:
        over["data_root"] = a.data_root
    if a.teacher and cfg.kind == "ect":  # ECT has no teacher at training time: it starts from the teacher's weights
        over["init_from"] = str(Path(a.teacher).resolve())
    elif a.teacher:
        over["teacher"] = a.teacher if a.teacher in ("exact", "empirical") else str(Path(a.teacher).resolve())
    if a.steps is not None:
        over["steps"] = str(a.steps)
    cfg = cfg.override(over)
    if cfg.kind in ("cd", "pd", "scd") and cfg.data.startswith("file:") and cfg.teacher == "exact":
        raise ValueError("--data FILE has no exact score: pass --teacher empirical or --teacher RUN_DIR "
                         "(a toy-edm run trained on the same file)")
    out = Path(a.out or f"runs/{cfg.preset or a.preset}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; a run is a directory (config.json, checkpoints/): pass a new path")
    if cfg.kind == "pd":  # progressive distillation: one train() per round (cmlearn.train.pd)
        from cmlearn.train.pd import train_pd

        train_pd(cfg, out, resume=not a.no_resume)
        print(f"run written to {out} (the {cfg.pd_nfe}-step student; earlier rounds in {out / 'rounds'})")
        return 0
    before = None if a.no_resume else checkpoint_step(out)
    train(cfg, out, resume=not a.no_resume)
    if before is not None and before >= cfg.steps:
        print(f"nothing trained: {out} already holds this run, finished at step {before} (--no-resume starts it "
              "over, --out DIR trains a new one beside it, --steps N continues it)")
    else:
        print(f"run written to {out}" + (f" (resumed at step {before})" if before else ""))
    return 0


def cmd_sample(a) -> int:
    import numpy as np

    from cmlearn.runtime import default_device
    from cmlearn.train.evaluate import generate
    from cmlearn.train.runs import load_run

    run = load_run(a.run_dir, device=default_device())
    if run.cfg.kind in ("edm", "pd") and (a.ts or a.steps != 1):
        raise ValueError(f"{a.run_dir} is a {run.cfg.kind!r} run, sampled with an ODE sampler; --steps and --ts are "
                         "for consistency models (use --sampler and --nfe for a teacher)")
    if (a.sampler or a.nfe) and run.cfg.kind != "edm":
        raise ValueError(f"--sampler and --nfe are for EDM teacher runs; {a.run_dir} is a {run.cfg.kind!r} run")
    taus = [float(t) for t in a.ts.split(",")] if a.ts else None
    if a.sampler or a.nfe:
        from cmlearn.train.nfe import generate_nfe

        x = generate_nfe(run, a.n, a.nfe or 34, sampler=a.sampler or "heun", seed=a.seed)
    else:
        x = generate(run, a.n, steps=a.steps, taus=taus, seed=a.seed)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, x.cpu().numpy())
    elif out.suffix == ".png":
        from cmlearn.course.plotting import GRID_MAX, save_samples_figure

        how = f"{a.sampler or 'heun'}, {a.nfe or 34} NFE" if a.sampler or a.nfe else a.ts or f"{a.steps} step(s)"
        save_samples_figure(x.cpu(), out, title=f"{run.cfg.preset}: {how}")
        if x.ndim > 2 and a.n > GRID_MAX:
            print(f"{a.n} samples drawn; the figure {out} shows the first {GRID_MAX} (use a .npy --out for all)")
            return 0
    else:
        raise ValueError(f"--out must end in .npy or .png, got {out}")
    print(f"{a.n} samples written to {out}")
    return 0


def cmd_evaluate(a) -> int:
    from cmlearn.train.cache import PRETRAINED
    from cmlearn.train.config import TrainConfig
    from cmlearn.train.evaluate import evaluate, write_evaluation

    data = TrainConfig.load(Path(a.run_dir) / "config.json").data if (Path(a.run_dir) / "config.json").exists() else ""
    if a.inception_weights and data != "cifar10":
        raise ValueError(f"--inception-weights is for CIFAR-10 runs (FID); {a.run_dir} trained on {data or '?'}")
    res = evaluate(a.run_dir, n=a.n, seed=a.seed, inception_weights=a.inception_weights)
    for k, v in res.items():
        print(f"{k}: {v:.5g}" if isinstance(v, float) else f"{k}: {v}")
    for prefix, text in METRIC_LEGEND.items():
        if any(k.startswith(prefix) for k in res):
            print(text)
    if Path(a.run_dir).resolve().parent == PRETRAINED.resolve():  # the README quotes the stored file
        print(f"not written: {a.run_dir} is a run the course ships; its evaluation.json stays as built "
              "(scripts/build_pretrained.py)")
    else:
        print(f"wrote {write_evaluation(a.run_dir, res)}")
    return 0


METRIC_LEGEND = {
    "sw_": "sw_*: sliced Wasserstein-2 distance of the samples to fresh data, in the data's units (lower is better; "
           "sw_exact_heun18: the exact-score Heun N = 18 sampler, sw_floor: the data against itself, both only for "
           "a preset data set)",
    "nll_": "nll_*: mean negative log-likelihood of the samples under the exact mixture (lower is better)",
    "fd_": "fd_*: FD-digits, the Frechet distance of classifier features to the test digits (lower is better)",
    "fid_": "fid_*: FID against the CIFAR-10 training set statistics (lower is better)",
    "hist_": "hist_*: how many samples the digits classifier puts in each class 0..9 (a 0 is a dropped digit)",
}


def cmd_import(a) -> int:
    from cmlearn.train.imports import describe, import_checkpoint

    print(describe(import_checkpoint(a.file, a.out, preset=a.preset, distance=a.distance)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    bad = [e for e in extra if args.cmd != "train" or e.startswith("-") or "=" not in e]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if args.cmd == "train":
        args.overrides = list(args.overrides) + extra
    try:
        if args.cmd == "demo":
            from cmlearn.course.demo import run_demo

            run_demo(args.out, train_full=args.train)
            return 0
        commands = {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "import-checkpoint": cmd_import}
        return commands[args.cmd](args)
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError) as err:
        print(f"cmlearn {args.cmd}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
