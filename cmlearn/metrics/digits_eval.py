"""Sample quality on 8x8 digits: FD-digits (FID's recipe in a small classifier's feature space), class counts.

FD-digits = Frechet distance between Gaussians fitted to the classifier's penultimate features of the
samples and of a reference split of the real digits. Like FID it is biased upward for small sample sets:
compare numbers computed with the same number of samples and the same reference, and against the
train-vs-test noise floor.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from cmlearn.data.digits import SPLITS, digits_tensor
from cmlearn.metrics.frechet import frechet_distance_from_features
from cmlearn.nets.digits_classifier import DigitsClassifier, load_digits_classifier


@lru_cache(maxsize=1)
def _shipped_classifier() -> DigitsClassifier:
    return load_digits_classifier()


def _check_images(samples: torch.Tensor, *, clip: bool, min_n: int = 2) -> torch.Tensor:
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[1:] != (1, 8, 8):
        got = getattr(samples, "shape", type(samples))
        raise ValueError(f"samples must be a (n, 1, 8, 8) tensor, got {got}")
    if len(samples) < min_n:
        raise ValueError(f"need at least {min_n} samples, got {len(samples)}")
    samples = samples.detach().float().cpu()
    if not torch.isfinite(samples).all():
        raise ValueError(f"samples contain NaN or Inf ({int((~torch.isfinite(samples)).sum())} values)")
    return samples.clamp(-1.0, 1.0) if clip else samples


@torch.no_grad()
def digits_features(images: torch.Tensor, *, classifier: DigitsClassifier | None = None,
                    batch_size: int = 1024) -> torch.Tensor:
    """Penultimate classifier features (n, d) of (n, 1, 8, 8) images in [-1, 1], on the CPU."""
    clf = classifier if classifier is not None else _shipped_classifier()
    was = clf.training
    clf.eval()
    dev = clf.head.weight.device
    feats = torch.cat([clf.features(images[i:i + batch_size].to(dev)).cpu()
                       for i in range(0, len(images), batch_size)])
    clf.train(was)
    return feats


def fd_digits(samples: torch.Tensor, *, classifier: DigitsClassifier | None = None,
              reference: str | torch.Tensor = "test", clip: bool = True) -> float:
    """FD-digits of (n, 1, 8, 8) samples against a real split ("train", "test", "all") or a tensor of images.

    Samples are clamped to [-1, 1] first (as when they are written as images) unless ``clip=False``.
    """
    samples = _check_images(samples, clip=clip)
    if isinstance(reference, str):
        if reference not in SPLITS:
            raise ValueError(f"reference must be one of {SPLITS} or an image tensor, got {reference!r}")
        reference = digits_tensor(reference)
    else:
        reference = _check_images(reference, clip=False)
    f1 = digits_features(samples, classifier=classifier)
    f2 = digits_features(reference, classifier=classifier)
    return frechet_distance_from_features(f1, f2)


def class_histogram(samples: torch.Tensor, *, classifier: DigitsClassifier | None = None,
                    clip: bool = True) -> torch.Tensor:
    """Counts (num_classes,) of predicted labels: which digits a model makes, how evenly (mode coverage)."""
    samples = _check_images(samples, clip=clip, min_n=1)
    clf = classifier if classifier is not None else _shipped_classifier()
    dev = clf.head.weight.device
    pred = clf.predict(samples.to(dev)).cpu()
    return torch.bincount(pred, minlength=clf.head.out_features)
