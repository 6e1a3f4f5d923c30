"""The 1,797 8x8 UCI optdigits images bundled with scikit-learn (no download), scaled to [-1, 1].

Pixel values 0..16 map linearly to [-1, 1] (x / 8 - 1), the data range the paper uses for images.
The train/test split is stratified by label and fixed by ``seed``, so every notebook sees the same split.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import TensorDataset

SPLITS = ("train", "test", "all")
N_DIGITS = 1797
SHAPE = (1, 8, 8)
"""One digit image: (channels, height, width)."""


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    """All images (n, 8, 8) with values 0..16 and labels (n,), read once from scikit-learn's bundled copy."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


@lru_cache(maxsize=16)
def _split_indices(test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices of a split stratified by label."""
    from sklearn.model_selection import train_test_split

    _, labels = _load()
    train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed,
                                   stratify=labels)
    return np.sort(train), np.sort(test)


def digits(*, split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> TensorDataset:
    """TensorDataset of (images (n, 1, 8, 8) float32 in [-1, 1], labels (n,) int64) of a split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = _load()
    if split == "all":
        idx = np.arange(len(labels))
    else:
        train, test = _split_indices(float(test_fraction), int(seed))
        idx = train if split == "train" else test
    x = torch.from_numpy(images[idx] / 8.0 - 1.0).unsqueeze(1)
    y = torch.from_numpy(labels[idx])
    return TensorDataset(x, y)


def digits_tensor(split: str = "train", *, test_fraction: float = 0.2, seed: int = 0) -> torch.Tensor:
    """The images of ``digits(split=...)`` alone: an (n, 1, 8, 8) float32 tensor in [-1, 1]."""
    return digits(split=split, test_fraction=test_fraction, seed=seed).tensors[0]
