"""Checkpoints: written atomically (a crash never leaves a half-written file), read with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(state: dict, path: str | Path) -> None:
    """torch.save to a temporary file, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict:
    """Load a checkpoint dict on CPU; missing or corrupt files raise with the path named. ``mmap``: tensors stay
    on disk until touched (for reading ``step`` without loading the weights)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} is corrupt or unreadable: {err}") from err
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise RuntimeError(f"checkpoint {path} is not a cmlearn checkpoint (missing 'step'/'model')")
    return state
