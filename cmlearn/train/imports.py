"""Import the paper's released CIFAR-10 checkpoints (openai/consistency_models_cifar10) as cmlearn run directories.

``import_checkpoint(FILE, RUN_DIR)`` (and ``cmlearn import-checkpoint FILE --out RUN_DIR``) reads a Flax msgpack
checkpoint (``cmlearn.data.official_checkpoint``), maps the official NCSN++ parameter names onto
``cmlearn.nets.ncsnpp.NCSNpp`` (``cmlearn.nets.ncsnpp_official``), checks every name and shape and the total count,
and writes RUN_DIR/config.json (the matching preset: cifar10-edm, cifar10-cd or cifar10-ct) and
RUN_DIR/checkpoints/latest.pt with the EMA weights (``params_ema``) as ``ema`` and the online weights (``params``)
as ``model``, plus RUN_DIR/imported.json (source file, its SHA-256, what was detected). ``cmlearn sample`` and
``cmlearn evaluate`` then work on it unchanged, and it serves as ``init_from`` or a CD ``teacher``. It is not a
training state (no optimizer or generators): ``cmlearn train`` cannot resume it.

The released files (README of openai/consistency_models_cifar10): edm_cifar10_ema (EDM teacher), cd-l1, cd-l2,
cd-lpips (checkpoint_80), ct-lpips (checkpoint_74), and continuous-time CD/CT runs. The preset is detected from the
state: ``target_params`` present -> CT (``StateWithTarget``, configs/cifar10_ve_ct_adaptive.py); otherwise the
stored ``lr``: 1e-3 -> EDM (configs/cifar10_k_ve.py), 4e-4 -> CD (configs/cifar10_ve_cd.py). The CD metric is
read from the file path (l1, l2, lpips as in the release's folder names). ``preset=`` / ``distance=`` override.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np

from cmlearn.data.official_checkpoint import flatten, read_flax_msgpack
from cmlearn.nets.ncsnpp import CONFIGS, NCSNpp, ncsnpp_config
from cmlearn.nets.ncsnpp_official import expected_shapes, state_dict_from_official
from cmlearn.train.checkpoint import save_checkpoint
from cmlearn.train.config import TrainConfig

IMPORTABLE = ("cifar10-edm", "cifar10-cd", "cifar10-ct")
LR_OF_PRESET = {"cifar10-edm": 1e-3, "cifar10-cd": 4e-4}  # optim.lr of the official configs


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def check_params(params: dict[str, np.ndarray], net: NCSNpp, cfg: dict) -> None:
    """Raise ValueError naming the first official parameter that is missing, extra or of the wrong shape, or a
    total count that differs from cmlearn's NCSN++ (its parameters plus the nf Fourier frequencies)."""
    want = expected_shapes(net, cfg)
    for name, shape in want.items():
        if name not in params:
            raise ValueError(f"parameter {name} (shape {shape}) is missing from the file")
        got = tuple(np.shape(params[name]))
        if got != shape:
            raise ValueError(f"parameter {name} has shape {got} in the file; cmlearn's NCSN++ expects {shape}")
    extra = [k for k in params if k not in want]
    if extra:
        raise ValueError(f"parameter {extra[0]} in the file has no counterpart in cmlearn's NCSN++ "
                         f"({len(extra)} unexpected in all)")
    total = sum(_prod(np.shape(v)) for v in params.values())
    ours = sum(p.numel() for p in net.parameters()) + net.fourier.freqs.numel()
    if total != ours:
        raise ValueError(f"the file holds {total:,} parameters, cmlearn's NCSN++ {ours:,}")


def match_net(params: dict[str, np.ndarray], net_config: str | None = None) -> tuple[str, dict, NCSNpp]:
    """The named NCSN++ config (CONFIGS) whose layout the file matches, tried among those with the file's nf
    (the paper's "cifar10" when none has it); ValueError with the first mismatch when none matches."""
    nf = np.shape(params.get("GaussianFourierProjection_0/W", ()))[:1]
    same_nf = [n for n in CONFIGS if (CONFIGS[n]["nf"],) == nf]
    names = [net_config] if net_config else (same_nf or ["cifar10"])
    first_err = None
    for name in names:
        cfg = ncsnpp_config(name)
        net = NCSNpp(**cfg)
        try:
            check_params(params, net, cfg)
            return name, cfg, net
        except ValueError as err:
            first_err = first_err or err
    raise ValueError(f"not cmlearn's NCSN++ (config {' / '.join(names)}; 'cifar10' is the paper's): {first_err}")


def _scalar(v) -> float | None:
    try:
        return float(np.asarray(v).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None


def detect_preset(state: dict, path: Path) -> str:
    """cifar10-ct if the state has target_params, else by the stored lr (EDM 1e-3, CD 4e-4), else (no lr: a bare
    parameter tree) by the release's file names; ValueError if unsure."""
    if "target_params" in state:
        return "cifar10-ct"
    lr = _scalar(state.get("lr"))
    for preset, value in LR_OF_PRESET.items():
        if lr is not None and math.isclose(lr, value, rel_tol=1e-3):
            return preset
    name = str(path).lower()  # a bare parameter tree (no lr): the release's names, edm_cifar10_ema, cd-*, ct-*
    for preset, pattern in (("cifar10-edm", r"(?<![a-z])edm"), ("cifar10-cd", r"(?<![a-z])cd-"),
                            ("cifar10-ct", r"(?<![a-z])ct-")):
        if lr is None and re.search(pattern, name):
            return preset
    raise ValueError(f"cannot tell which preset {path.name} matches (lr={lr}, no target_params); pass "
                     f"preset= one of {IMPORTABLE}")


def detect_distance(path: Path) -> str | None:
    """The CD/CT metric named in the file path (the release's folders: cd-l1, cd-l2, cd-lpips, ct-lpips)."""
    found = re.findall(r"(?<![a-z0-9])(lpips|l1|l2)(?![a-z0-9])", str(path).lower())
    return found[-1] if found else None


def _weights(state: dict, path: Path) -> tuple[dict, dict, dict | None]:
    """(online, EMA, target) flat parameter dicts; a bare parameter tree serves as all of online and EMA."""
    if "params_ema" not in state and "params" not in state:
        if "Conv_0" in state or "Dense_0" in state:
            return flatten(state), flatten(state), None
        raise ValueError(f"{path} holds no 'params_ema' or 'params' (keys: {sorted(state)[:8]})")
    ema = flatten(state.get("params_ema") or state["params"])
    online = flatten(state.get("params") or state["params_ema"])
    target = flatten(state["target_params"]) if state.get("target_params") else None
    return online, ema, target


def _run_config(preset: str, size: str, net_cfg: dict, distance: str | None) -> TrainConfig:
    from cmlearn.train.presets import get_preset

    cfg = get_preset(preset, size=size)
    over: dict = {"net_kwargs": {**net_cfg, "dropout": cfg.net_kwargs.get("dropout", 0.0)}}
    if distance and cfg.kind != "edm":
        over["distance"] = distance
    return cfg.override(over)


def import_checkpoint(file: str | Path, out: str | Path, *, preset: str | None = None, distance: str | None = None,
                      net_config: str | None = None) -> Path:
    """Turn an official CIFAR-10 checkpoint FILE into the run directory ``out``; returns ``out``.

    Raises ValueError with the first mismatched parameter named for a file that is not the paper's NCSN++ (or
    the smoke config, for test-made files), FileNotFoundError for a missing file.
    """
    path, out = Path(file), Path(out)
    if (out / "checkpoints" / "latest.pt").exists() and not (out / "imported.json").exists():
        raise ValueError(f"{out} holds a trained run; import into another directory")
    if preset is not None and preset not in IMPORTABLE:
        raise ValueError(f"preset must be one of {IMPORTABLE}, got {preset!r}")
    state = read_flax_msgpack(path)
    online, ema, target = _weights(state, path)
    name, net_cfg, net = match_net(ema, net_config)
    for other in (online, target):
        if other is not None and other is not ema:
            check_params(other, net, net_cfg)
    preset = preset or detect_preset(state, path)
    distance = distance or detect_distance(path)
    cfg = _run_config(preset, "full" if name == "cifar10" else "smoke", net_cfg, distance)
    to_sd = lambda p: state_dict_from_official(net, net_cfg, p)  # noqa: E731
    prefixed = lambda sd: {f"net.{k}": v for k, v in sd.items()}  # noqa: E731  (ConsistencyFunction / Denoiser)
    step = int(_scalar(state.get("step")) or 0)
    info = {"source": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "preset": preset, "net_config": name, "distance": cfg.distance if cfg.kind != "edm" else None,
            "step": step, "parameters": sum(_prod(np.shape(v)) for v in ema.values()),
            "weights": {"ema": "params_ema" if "params_ema" in state else "params", "model": "params"},
            "note": "imported weights, not a training state: cmlearn train cannot resume this directory"}
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    shape = [net_cfg.get("in_channels", 3), net_cfg.get("resolution", 32), net_cfg.get("resolution", 32)]
    save_checkpoint({"step": step, "model": prefixed(to_sd(online)), "ema": prefixed(to_sd(ema)),
                     "target": prefixed(to_sd(target)) if target is not None else None, "shape": shape,
                     "world": 1, "config": cfg.to_dict(), "imported": info}, out / "checkpoints" / "latest.pt")
    (out / "imported.json").write_text(json.dumps(info, indent=2))
    return out


def describe(out: str | Path) -> str:
    """One line about an imported run directory (what the CLI prints)."""
    info = json.loads((Path(out) / "imported.json").read_text())
    dist = f", distance {info['distance']}" if info["distance"] else ""
    return (f"imported {info['parameters']:,} parameters ({info['net_config']} NCSN++, step {info['step']}) as "
            f"preset {info['preset']}{dist} into {out}")


def export_official(run_dir: str | Path, path: str | Path, *, lr: float | None = None) -> Path:
    """Write an NCSN++ run (its EMA and online weights) as the official release would: a jcm ``State`` (or
    ``StateWithTarget`` for CT) in Flax msgpack under the official parameter names. The inverse of
    ``import_checkpoint``; the course uses it to make release-format files from smoke runs."""
    from cmlearn.data.official_checkpoint import unflatten, write_flax_msgpack
    from cmlearn.nets.ncsnpp_official import official_params
    from cmlearn.train.checkpoint import load_checkpoint

    cfg = TrainConfig.load(Path(run_dir) / "config.json")
    if cfg.net != "ncsnpp":
        raise ValueError(f"{run_dir} trains net {cfg.net!r}; only NCSN++ runs have an official format")
    ckpt = load_checkpoint(Path(run_dir) / "checkpoints" / "latest.pt")
    net_cfg = {k: v for k, v in cfg.net_kwargs.items() if k != "dropout"}
    net = NCSNpp(**net_cfg)

    def params(key: str) -> dict:
        net.load_state_dict({k[4:]: v for k, v in ckpt[key].items() if k.startswith("net.")})
        return unflatten(official_params(net, net_cfg))

    lr = lr if lr is not None else LR_OF_PRESET.get(cfg.preset, 2e-4)
    state = {"step": np.asarray(ckpt["step"], dtype=np.int32), "lr": float(lr), "ema_rate": float(cfg.ema_decay),
             "params": params("model"), "params_ema": params("ema"), "model_state": {}, "opt_state": {},
             "rng_state": np.zeros(2, dtype=np.uint32)}
    if cfg.kind == "ct":
        state["target_params"] = params("target") if ckpt.get("target") else state["params"]
    return write_flax_msgpack(state, path)
