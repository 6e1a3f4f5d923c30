import shutil

import pytest
import torch

from cmlearn.data.digits import digits, digits_tensor
from cmlearn.metrics.digits_eval import class_histogram, fd_digits
from cmlearn.nets.digits_classifier import DEFAULT_WEIGHTS, DigitsClassifier, load_digits_classifier


def test_shapes_range_and_labels():
    x, y = digits(split="all").tensors
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0
    # pixel values 0..16 map to multiples of 1/8 in [-1, 1]
    assert torch.equal((x + 1) * 8, ((x + 1) * 8).round())
    assert set(y.tolist()) == set(range(10)) and torch.bincount(y).min() >= 170


def test_split_sizes_disjoint_stratified_deterministic():
    tr, te = digits(split="train"), digits(split="test")
    assert len(tr) + len(te) == 1797 and len(te) == 360
    # disjoint and covering: every image row of "all" appears exactly once across the two splits
    def key(ds):
        return {tuple(r.tolist()) + (int(lab),) for r, lab in zip(ds.tensors[0].flatten(1), ds.tensors[1])}

    k_tr, k_te = key(tr), key(te)
    assert not k_tr & k_te and len(k_tr | k_te) == len(key(digits(split="all")))
    # stratified: each class's test share is within one image of 20%
    counts_all = torch.bincount(digits(split="all").tensors[1])
    counts_te = torch.bincount(te.tensors[1], minlength=10)
    assert ((counts_te - 0.2 * counts_all).abs() <= 1).all()
    assert torch.equal(digits_tensor("train"), tr.tensors[0])
    assert torch.equal(digits(split="test", seed=0).tensors[0], te.tensors[0])
    other = digits(split="test", seed=1).tensors[0]
    assert other.shape == te.tensors[0].shape and not torch.equal(other, te.tensors[0])
    assert len(digits(split="test", test_fraction=0.5)) in (898, 899)


@pytest.mark.parametrize("kw", [dict(split="validation"), dict(split="train", test_fraction=0.0),
                                dict(split="test", test_fraction=1.5)])
def test_bad_arguments(kw):
    with pytest.raises(ValueError, match="split|test_fraction"):
        digits(**kw)


def test_shipped_classifier_accuracy_on_test_split():
    clf = load_digits_classifier()
    x, y = digits(split="test").tensors
    acc = (clf.predict(x) == y).float().mean().item()
    assert acc > 0.95, acc
    f = clf.features(x)
    assert f.shape == (360, clf.config["feature_dim"]) and torch.isfinite(f).all()


def test_missing_and_corrupt_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_digits_classifier(tmp_path / "nothere.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match="corrupt"):
        load_digits_classifier(bad)
    truncated = tmp_path / "truncated.pt"
    shutil.copy(DEFAULT_WEIGHTS, truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(ValueError, match="corrupt"):
        load_digits_classifier(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a cmlearn digits classifier"):
        load_digits_classifier(foreign)


def test_fd_digits_orders_real_above_noise_and_class_histogram():
    train, test = digits_tensor("train"), digits_tensor("test")
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1000, 1, 8, 8, generator=g).clamp(-1, 1)
    fd_real, fd_noise = fd_digits(train), fd_digits(noise)
    assert fd_digits(test) == pytest.approx(0.0, abs=1e-6)
    assert 0 < fd_real < 20 and fd_noise > 10 * fd_real
    assert fd_digits(train, reference="all") < fd_real
    assert fd_digits(train, reference=test) == pytest.approx(fd_real)
    h = class_histogram(train)
    assert h.shape == (10,) and h.sum() == len(train) and h.min() >= 130
    y = digits(split="train").tensors[1]
    only3 = class_histogram(train[y == 3])
    assert only3.argmax() == 3 and only3[3] >= 0.95 * only3.sum()
    # a random untrained classifier is accepted too
    assert fd_digits(train, classifier=DigitsClassifier()) >= 0
    with pytest.raises(ValueError, match="reference"):
        fd_digits(train, reference="validation")
    with pytest.raises(ValueError, match="samples"):
        fd_digits(torch.zeros(10, 1, 16, 16))
    with pytest.raises(ValueError, match="NaN"):
        fd_digits(torch.full((10, 1, 8, 8), float("nan")))
