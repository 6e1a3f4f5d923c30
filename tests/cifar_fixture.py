"""A tiny fake CIFAR-10 on disk in the official format (pickled batches, optional tar.gz), for tests.

Images are seeded random uint8, labels cycle 0..9; ``fake_cifar10_arrays`` gives the same contents back so
tests can compare what the reader returns with what was written.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def fake_cifar10_arrays(*, n_per_batch: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{batch name: (data (n, 3072) uint8, labels (n,) int)} for the five train batches and the test batch."""
    out = {}
    for i, name in enumerate((*TRAIN_BATCHES, TEST_BATCH)):
        rng = np.random.default_rng(1000 + i)
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = (np.arange(n_per_batch) + i) % 10
        out[name] = (data, labels)
    return out


def _payloads(n_per_batch: int) -> dict[str, bytes]:
    files = {}
    for name, (data, labels) in fake_cifar10_arrays(n_per_batch=n_per_batch).items():
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data,
             b"filenames": [f"img_{j}.png".encode() for j in range(len(data))]}
        files[name] = pickle.dumps(d, protocol=2)
    meta = {b"num_cases_per_batch": n_per_batch, b"label_names": [n.encode() for n in LABEL_NAMES],
            b"num_vis": 3072}
    files["batches.meta"] = pickle.dumps(meta, protocol=2)
    files["readme.html"] = b"<html>fake CIFAR-10 for tests</html>"
    return files


def make_fake_cifar10(root: str | Path, *, n_per_batch: int = 4, archive: bool = False) -> Path:
    """Write root/cifar-10-batches-py/ or, with ``archive``, only root/cifar-10-python.tar.gz; return it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = _payloads(n_per_batch)
    if archive:
        path = root / ARCHIVE
        with tarfile.open(path, "w:gz") as tar:
            for name, payload in files.items():
                info = tarfile.TarInfo(f"{FOLDER}/{name}")
                info.size, info.mtime, info.mode = len(payload), 0, 0o644
                tar.addfile(info, io.BytesIO(payload))
        return path
    folder = root / FOLDER
    folder.mkdir(exist_ok=True)
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
    return folder
