"""Write images in the official CIFAR-10 python-pickle layout (your own 32x32 data, or a synthetic smoke set)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from cmlearn.data.cifar10 import FOLDER, META, TEST_BATCHES, TRAIN_BATCHES


def write_cifar10_format(root: str | Path, images: torch.Tensor, labels: torch.Tensor, *,
                         test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
                         label_names: list[str] | None = None) -> Path:
    """Split uint8 (n, 3, 32, 32) images over data_batch_1..5 (and test_batch) under root/cifar-10-batches-py/."""
    if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (3, 32, 32):
        raise ValueError(f"images must be uint8 (n, 3, 32, 32), got {images.dtype} {tuple(images.shape)}")
    if len(images) < len(TRAIN_BATCHES):
        raise ValueError(f"need at least {len(TRAIN_BATCHES)} train images, got {len(images)}")
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    test_images = images[:1] if test_images is None else test_images
    test_labels = labels[:1] if test_labels is None else test_labels
    chunks = zip(np.array_split(images.numpy(), len(TRAIN_BATCHES)), np.array_split(labels.numpy(), len(TRAIN_BATCHES)))
    batches = dict(zip(TRAIN_BATCHES, chunks))
    batches[TEST_BATCHES[0]] = (test_images.numpy(), test_labels.numpy())
    for name, (x, y) in batches.items():
        d = {b"batch_label": name.encode(), b"data": x.reshape(len(x), -1), b"labels": [int(v) for v in y]}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    names = label_names or [f"class_{i}" for i in range(10)]
    (folder / META).write_bytes(pickle.dumps({b"label_names": [n.encode() for n in names]}, protocol=2))
    return folder


def _colour_fields(n: int, g: torch.Generator) -> torch.Tensor:
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=32, mode="bilinear", align_corners=False)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def synthetic_cifar10(root: str | Path, *, n: int = 64, seed: int = 0, n_test: int = 0) -> Path:
    """A tiny synthetic data set (smooth random colour fields) in the CIFAR-10 layout: for smoke runs only.
    The test split holds ``n_test`` further images (0: a copy of the first train image)."""
    if n_test < 0:
        raise ValueError(f"n_test must be >= 0, got {n_test}")
    g = torch.Generator().manual_seed(seed)
    images = _colour_fields(n, g)
    labels = torch.randint(10, (n,), generator=g)
    if not n_test:
        return write_cifar10_format(root, images, labels)
    test = _colour_fields(n_test, g)
    return write_cifar10_format(root, images, labels, test_images=test,
                                test_labels=torch.randint(10, (n_test,), generator=g))
