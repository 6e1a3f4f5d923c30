"""Run-time switches shared by the whole course: fast mode, seeding and the default device."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


def fast_mode() -> bool:
    """True when ``CMLEARN_FAST`` is set to a true value (``make test`` and CI set it to 1).

    This is the only place in the package that reads the variable.
    """
    return os.environ.get("CMLEARN_FAST", "0").strip().lower() not in ("", "0", "false", "no", "off")


def pick(full: T, fast: T) -> T:
    """Return ``fast`` in fast mode and ``full`` otherwise: the one helper that shrinks work."""
    return fast if fast_mode() else full


@contextmanager
def full_mode() -> Iterator[None]:
    """Inside the block ``fast_mode()`` is False (``CMLEARN_FAST`` set to 0, restored after): to name a full-mode
    preset from fast mode, e.g. the shipped runs' (``cmlearn.train.cache.shipped_run``)."""
    old = os.environ.get("CMLEARN_FAST")
    os.environ["CMLEARN_FAST"] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["CMLEARN_FAST"]
        else:
            os.environ["CMLEARN_FAST"] = old


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); returns a fresh CPU generator with that seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when available, else Apple MPS, else CPU. Never hard-code ``.cuda()``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
