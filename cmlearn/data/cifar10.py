"""CIFAR-10 from the official python-pickle batches (Krizhevsky 2009), scaled to [-1, 1] as in the paper.

Layout read: ``root/cifar-10-batches-py/`` with data_batch_1..5 (train, 50,000 images), test_batch (10,000)
and batches.meta; each batch is a pickled dict with b"data" (n, 3072) uint8 (channel-major 3x32x32) and
b"labels". When that folder is missing, ``root/cifar-10-python.tar.gz`` is checked against the official MD5
and extracted; with ``download=True`` the archive is first fetched from the official URL. Nothing is
downloaded otherwise.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"
NUM_CLASSES = 10
SHAPE = (3, 32, 32)
"""One CIFAR-10 image: (channels, height, width)."""


def md5sum(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _where(root: Path, *, suggest_download: bool = True) -> str:
    """How to fix a missing or corrupt data set: where the archive goes."""
    return (f"download {URL} (md5 {MD5}) and put it at {root / ARCHIVE}, or extract it so that "
            f"{root / FOLDER}/data_batch_1 exists" + (", or pass download=True" if suggest_download else ""))


def _download(root: Path) -> None:
    """Fetch the official archive to root/ARCHIVE (through a .part file, so a failed fetch leaves nothing)."""
    root.mkdir(parents=True, exist_ok=True)
    part = root / (ARCHIVE + ".part")
    try:
        with urllib.request.urlopen(URL, timeout=60) as resp, open(part, "wb") as f:
            shutil.copyfileobj(resp, f)
    except OSError as err:  # URLError, timeouts, refused connections, disk errors
        part.unlink(missing_ok=True)
        raise RuntimeError(f"could not download CIFAR-10 from {URL}: {err}. Offline? Instead, "
                           f"{_where(root, suggest_download=False)}") from err
    part.replace(root / ARCHIVE)


def _extract(root: Path) -> None:
    """Check the archive's MD5 and extract its cifar-10-batches-py/ members into root."""
    archive = root / ARCHIVE
    digest = md5sum(archive)
    if digest != MD5:
        raise RuntimeError(f"{archive} is corrupt or not the CIFAR-10 python archive: md5 {digest}, "
                           f"expected {MD5}. Delete it and {_where(root)}")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(FOLDER + "/") and m.isfile()]
            names = {m.name.split("/", 1)[1] for m in members}
            missing = sorted(set(TRAIN_BATCHES + TEST_BATCHES + (META,)) - names)
            if missing:
                raise RuntimeError(f"{archive} lacks {', '.join(FOLDER + '/' + n for n in missing)}")
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise RuntimeError(f"cannot extract {archive}: {err}. Delete it and {_where(root)}") from err


def prepare_cifar10(root: str | Path, *, download: bool = False) -> Path:
    """Make sure root/cifar-10-batches-py holds every batch (extracting or downloading the archive)."""
    root = Path(root).expanduser()
    folder = root / FOLDER
    needed = TRAIN_BATCHES + TEST_BATCHES + (META,)
    if all((folder / n).is_file() for n in needed):
        return folder
    if not (root / ARCHIVE).is_file():
        if not download:
            missing = [n for n in needed if not (folder / n).is_file()]
            raise FileNotFoundError(f"CIFAR-10 not found: {folder} lacks {', '.join(missing)} and there is "
                                    f"no {root / ARCHIVE}. To fix it, {_where(root)}")
        _download(root)
        try:
            _extract(root)
        except RuntimeError:
            (root / ARCHIVE).unlink(missing_ok=True)  # a bad fresh download is not worth keeping
            raise
        return folder
    _extract(root)
    return folder


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) int64 of one pickled batch, validated."""
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch not found: {path}. To fix it, {_where(path.parent.parent)}")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError) as err:
        raise ValueError(f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: {err}); it may be "
                         f"truncated. Delete {path.parent} and {_where(path.parent.parent)}") from err
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"{path}: expected a dict with b'data' and b'labels', got {type(d).__name__}"
                         f"{' with keys ' + str(sorted(d)) if isinstance(d, dict) else ''}")
    data, labels = np.asarray(d[b"data"]), np.asarray(d[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: b'data' must be a uint8 array of shape (n, 3072), "
                         f"got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: expected {len(data)} integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, "
                         f"got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(root: str | Path, *, train: bool = True,
                 download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) int64 of the train (50,000) or test (10,000) split."""
    folder = prepare_cifar10(root, download=download)
    parts = [_read_batch(folder / n) for n in (TRAIN_BATCHES if train else TEST_BATCHES)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def cifar10_uint8(root: str | Path, *, train: bool = True, download: bool = False) -> torch.Tensor:
    """The whole split as a uint8 tensor (n, 3, 32, 32), unflipped: reference images for FID statistics."""
    return load_cifar10(root, train=train, download=download)[0]


def class_names(root: str | Path, *, download: bool = False) -> list[str]:
    """The ten label names from batches.meta (airplane, automobile, ...)."""
    path = prepare_cifar10(root, download=download) / META
    try:
        with open(path, "rb") as f:
            names = pickle.load(f, encoding="bytes")[b"label_names"]
    except Exception as err:  # any failure here means a corrupt meta file
        raise ValueError(f"{path} is not a readable CIFAR-10 batches.meta: {err}") from err
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


class CIFAR10(Dataset):
    """(image (3, 32, 32) float32 in [-1, 1], label) pairs; horizontal flips with probability 1/2 if ``flip``.

    Images stay uint8 in memory (150 MB for the train split) and are scaled per item: x / 127.5 - 1.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, flip: bool = True):
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (3, 32, 32):
            raise ValueError(f"images must be uint8 (n, 3, 32, 32), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
        self.images, self.labels, self.flip = images, labels, flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].float() / 127.5 - 1.0
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, int(self.labels[i])


def cifar10(root: str | Path, *, train: bool = True, download: bool = False, flip: bool = True) -> CIFAR10:
    """CIFAR-10 train or test split: Dataset of ((3, 32, 32) in [-1, 1], label), random flips if ``flip``."""
    images, labels = load_cifar10(root, train=train, download=download)
    return CIFAR10(images, labels, flip=flip)
