"""FID with the paper's protocol: 50k samples of the EMA model against CIFAR-10 *train* statistics.

Features are the 2048-d pool3 activations of the TensorFlow Inception-v3 graph (inception-2015-12-05) that FID
was defined with, run through torch-fidelity's port (the same graph that clean-fid's "legacy_tensorflow" mode
loads, with TensorFlow's bilinear resize to 299x299). Samples in [-1, 1] are quantized to uint8 exactly as
when saved to PNG, so FID sees what a saved image would show. FID = Frechet distance between Gaussians fitted
to the two feature sets (``cmlearn.metrics.frechet``). Fewer samples bias FID upward: numbers from n < 50k
(or against the test split) are not comparable to the paper's.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import urllib.error
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

PAPER_NUM_SAMPLES = 50_000
PAPER_REFERENCE_SPLIT = "train"
INCEPTION_NAME = "inception-v3-tf-2015-12-05-pool3"
# SHA-256 of torch-fidelity's weights file (95,628,359 bytes; its name carries the first 8 hex digits)
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


class NotComparableWarning(UserWarning):
    """An FID computed off the paper's protocol (fewer than 50k samples, or not against the train split)."""


class FeatureExtractor(Protocol):
    """Callable on uint8 images (B, 3, H, W) returning features (B, D); ``name`` identifies the network."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass
class FeatureStats:
    """Mean (D,) and covariance (D, D), float64, of n feature vectors; names of the extractor and source."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    extractor: str = ""
    source: str = ""

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        np.savez(tmp, mu=self.mu, sigma=self.sigma, n=self.n, extractor=self.extractor, source=self.source)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        try:
            with np.load(path) as f:
                return cls(f["mu"], f["sigma"], int(f["n"]), str(f["extractor"]), str(f["source"]))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a readable statistics file ({err}); delete it to recompute"
                             ) from err


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] to uint8 as PNG writers do: round(127.5 (x + 1)) (halves up), clipped to 0..255."""
    if not torch.isfinite(x).all():
        raise ValueError(f"images contain NaN or Inf ({int((~torch.isfinite(x)).sum())} values)")
    return torch.floor(127.5 * (x.detach().double() + 1.0) + 0.5).clamp(0, 255).to(torch.uint8)


def _check_uint8(batch: torch.Tensor) -> torch.Tensor:
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"images must be uint8 tensors (B, 3, H, W), got {type(batch).__name__}")
    if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
        got = f"{batch.dtype} {tuple(batch.shape)}"
        raise ValueError(f"images must be uint8 tensors (B, 3, H, W), got {got}")
    return batch


class _Moments:
    """Streaming mean and unbiased covariance in float64 (sums taken around a shift to avoid cancellation)."""

    def __init__(self):
        self.n, self.shift, self.s1, self.s2 = 0, None, None, None

    def add(self, f: np.ndarray) -> None:
        if self.shift is None:
            self.shift = f.mean(0)
            self.s1, self.s2 = np.zeros_like(self.shift), np.zeros((f.shape[1], f.shape[1]))
        g = f - self.shift
        self.n, self.s1, self.s2 = self.n + len(f), self.s1 + g.sum(0), self.s2 + g.T @ g

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.s1 / self.n
        return self.shift + m, (self.s2 - self.n * np.outer(m, m)) / (self.n - 1)


@torch.no_grad()
def compute_statistics(images: torch.Tensor | Iterable[torch.Tensor], extractor: FeatureExtractor, *,
                       batch_size: int = 250, source: str = "") -> FeatureStats:
    """Feature statistics of uint8 images: one (n, 3, H, W) tensor, or an iterable of (B, 3, H, W) batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(images, torch.Tensor):
        _check_uint8(images)
        images = images.split(batch_size)
    acc = _Moments()
    for batch in images:
        feats = extractor(_check_uint8(batch))
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().cpu().double().numpy()
        f = np.asarray(feats, dtype=np.float64)
        if f.ndim != 2 or len(f) != len(batch):
            raise ValueError(f"extractor must return ({len(batch)}, D) features, got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError("extractor returned NaN or Inf features")
        acc.add(f)
    if acc.n < 2:
        raise ValueError(f"need at least 2 images for a covariance, got {acc.n}")
    mu, sigma = acc.stats()
    return FeatureStats(mu, sigma, acc.n, getattr(extractor, "name", ""), source)


def fid(stats: FeatureStats, ref: FeatureStats) -> float:
    """FID: the Frechet distance between the two fitted Gaussians (both from the same extractor)."""
    from cmlearn.metrics.frechet import frechet_distance

    if stats.extractor and ref.extractor and stats.extractor != ref.extractor:
        raise ValueError(f"statistics from different extractors: {stats.extractor!r} vs {ref.extractor!r}")
    return frechet_distance(stats.mu, stats.sigma, ref.mu, ref.sigma)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def reference_statistics(cifar_root: str | Path, extractor: FeatureExtractor, *,
                         cache_dir: str | Path | None = None, batch_size: int = 250,
                         name: str | None = None) -> FeatureStats:
    """CIFAR-10 train-split statistics (the paper's reference), cached as cache_dir/cifar10-train-NAME.npz.

    ``cache_dir`` defaults to cifar_root/fid-stats; NAME is the extractor's ``name`` (or ``name=``), so stats
    of different networks never mix. A cached file is loaded without reading the images again.
    """
    name = name or getattr(extractor, "name", "")
    if not name:
        raise ValueError("the extractor has no `name`; pass name= so cached statistics can be told apart")
    cache = Path(cache_dir if cache_dir is not None else Path(cifar_root) / "fid-stats")
    path = cache / f"cifar10-{PAPER_REFERENCE_SPLIT}-{_slug(name)}.npz"
    source = f"cifar10-{PAPER_REFERENCE_SPLIT}"
    if path.is_file():
        stats = FeatureStats.load(path)
        if stats.extractor != name or stats.source != source:
            raise ValueError(f"{path} holds {stats.source!r} statistics of {stats.extractor!r}, expected "
                             f"{source!r} of {name!r}; delete it to recompute")
        return stats
    from cmlearn.data.cifar10 import cifar10_uint8

    images = cifar10_uint8(cifar_root, train=True)
    stats = compute_statistics(images, extractor, batch_size=batch_size, source=source)
    stats.extractor = name
    stats.save(path)
    return stats


def check_protocol(n: int, ref: FeatureStats) -> bool:
    """True when (n, reference) follow the paper's protocol; warns otherwise."""
    ok = n >= PAPER_NUM_SAMPLES and ref.source == f"cifar10-{PAPER_REFERENCE_SPLIT}"
    if not ok:
        warnings.warn(f"FID from {n} samples against {ref.source or 'unnamed'} statistics is not comparable "
                      f"to the paper ({PAPER_NUM_SAMPLES} samples against cifar10-{PAPER_REFERENCE_SPLIT}); "
                      "FID is biased upward for fewer samples", NotComparableWarning, stacklevel=3)
    return ok


def sampled_statistics(sample_fn: Callable[[int], torch.Tensor], n: int, extractor: FeatureExtractor, *,
                       batch_size: int = 500) -> FeatureStats:
    """Statistics of n samples drawn as sample_fn(b) -> (b, 3, H, W) in [-1, 1], quantized like PNGs."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")

    def batches():
        left = n
        while left > 0:
            b = min(batch_size, left)
            x = sample_fn(b)
            if not isinstance(x, torch.Tensor) or x.ndim != 4 or len(x) != b:
                raise ValueError(f"sample_fn({b}) must return a (b, 3, H, W) tensor, got "
                                 f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
            yield quantize(x)
            left -= b

    return compute_statistics(batches(), extractor, batch_size=batch_size, source="samples")


def fid_from_sampler(sample_fn: Callable[[int], torch.Tensor], n: int, extractor: FeatureExtractor,
                     ref_stats: FeatureStats, *, batch_size: int = 500) -> float:
    """FID of n samples (paper: n = 50,000 from the EMA model) against reference statistics."""
    check_protocol(n, ref_stats)
    return fid(sampled_statistics(sample_fn, n, extractor, batch_size=batch_size), ref_stats)


# ---------------------------------------------------------------- the Inception network


class InceptionFeatures(nn.Module):
    """pool3 features (B, 2048) of torch-fidelity's TF-ported Inception-v3 for uint8 images (B, 3, H, W)."""

    def __init__(self, weights_path: str | Path, *, device: torch.device | str = "cpu"):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise FileNotFoundError(f"Inception weights not found: {weights_path}")
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                   feature_extractor_weights_path=str(weights_path))
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
            raise ValueError(f"{weights_path} is not a torch-fidelity Inception-v3 weights file ({err}); "
                             f"delete it and get {inception_url()}") from err
        official = _sha256(weights_path) == INCEPTION_SHA256
        self.name = INCEPTION_NAME if official else f"{INCEPTION_NAME}[{weights_path.name}]"
        self.to(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        dev = next(self.net.parameters()).device
        return self.net(_check_uint8(images).to(dev))[0].float()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def inception_url() -> str:
    """Where torch-fidelity publishes the converted TF Inception-v3 weights (about 96 MB)."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def inception_extractor(device: torch.device | str | None = None, *, weights_path: str | Path | None = None,
                        cache_dir: str | Path | None = None) -> InceptionFeatures:
    """The FID network: weights from ``weights_path``, else cache_dir (torch.hub's cache), else downloaded."""
    from cmlearn.runtime import default_device

    device = default_device() if device is None else device
    if weights_path is None:
        url = inception_url()
        cache = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
        weights_path = cache / url.rsplit("/", 1)[1]
        if not weights_path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(url, str(weights_path), hash_prefix=INCEPTION_SHA256)
            except (urllib.error.URLError, OSError, RuntimeError) as err:
                raise RuntimeError(
                    f"could not download the FID Inception-v3 weights from {url} "
                    f"({type(err).__name__}: {err}). "
                    f"If offline, download that file on a machine with network access and put it at "
                    f"{weights_path}, or pass weights_path= to inception_extractor().") from err
    return InceptionFeatures(weights_path, device=device)


def random_inception_weights(path: str | Path, *, seed: int = 0) -> Path:
    """Write random weights for the Inception architecture (He-initialized convs): offline smoke runs only.

    FIDs computed with it exercise the whole pipeline but mean nothing.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the architecture with PyTorch's default init
            return None

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({}, path)
    net = _Unloaded("inception-v3-random", ["2048"], feature_extractor_weights_path=str(path))
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
    torch.save(net.state_dict(), path)
    return path
