"""Where training batches come from: fresh draws of a known mixture, or random minibatches of a tensor.

Both draw from an explicit torch.Generator, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class MixtureSource:
    """Fresh i.i.d. samples of a distribution with ``sample(n, generator=)`` every batch (infinite data)."""

    def __init__(self, dist):
        self.dist = dist

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape: (d,)."""
        return (self.dist.dim,)

    def batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.dist.sample(n, generator=generator).float()


class TensorSource:
    """Uniform random minibatches (with replacement) of a fixed tensor; optional random horizontal flips.

    uint8 images (0..255) are mapped to [-1, 1] per batch, so a whole data set stays small in memory.
    """

    def __init__(self, data: torch.Tensor, *, flip: bool = False):
        if data.ndim < 2 or len(data) < 1:
            raise ValueError(f"data must have shape (n, ...) with n >= 1, got {tuple(data.shape)}")
        self.data, self.flip = data, flip

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape: (d,) for points, (C, H, W) for images."""
        return tuple(self.data.shape[1:])

    def batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.data), (n,), generator=generator)
        x = self.data[idx]
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
        if self.flip:
            mask = torch.rand(n, generator=generator) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x


def load_points(path: str | Path) -> torch.Tensor:
    """An (n, d) float array saved with numpy.save: the user's own point cloud for the toy presets."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises several types for corrupt files
        raise ValueError(f"cannot read {path} as a numpy .npy array: {err}") from err
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{path}: expected an (n, d) array with n >= 2, got shape {getattr(arr, 'shape', None)}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(1).sum())
        raise ValueError(f"{path}: {bad} rows contain NaN or Inf")
    return torch.from_numpy(arr)
