"""FID pipeline (cmlearn.metrics.fid) offline: a seeded small conv net stands in for Inception, and the real
torch-fidelity Inception architecture runs with random weights written by the test (no download)."""

import dataclasses
import urllib.error
import warnings

import numpy as np
import pytest
import torch
from cifar_fixture import fake_cifar10_arrays, make_fake_cifar10
from torch import nn

from cmlearn.metrics import fid as F
from cmlearn.metrics.frechet import feature_statistics


class TinyFeatures(nn.Module):
    """A seeded random conv net (float64) on uint8 images: 24-d features; counts the images it has seen."""

    def __init__(self, seed=0, name="tiny-test"):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 12, 3, stride=2), nn.Tanh(), nn.Conv2d(12, 24, 3), nn.Tanh(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
        self.name, self.seen = name, 0

    @torch.no_grad()
    def forward(self, x):
        assert x.dtype == torch.uint8
        self.seen += len(x)
        return self.net(x.double() / 127.5 - 1)


def smooth_images(n, seed=0):
    """uint8 (n, 3, 32, 32): random low-frequency images (upsampled 4x4 noise), so features vary smoothly."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return (nn.functional.interpolate(low, size=32, mode="bilinear") * 255).round().to(torch.uint8)


def perturb(images, sigma, seed=1):
    g = torch.Generator().manual_seed(seed)
    noisy = images.float() + sigma * torch.randn(images.shape, generator=g)
    return noisy.round().clamp(0, 255).to(torch.uint8)


def test_quantize_like_png():
    x = torch.tensor([-1.5, -1.0, -1.0 + 0.4 / 127.5, -1.0 + 0.6 / 127.5, 0.0, 0.999, 1.0, 3.0])
    assert F.quantize(x).tolist() == [0, 0, 0, 1, 128, 255, 255, 255]  # 127.5 (x = 0) rounds up to 128
    u = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(F.quantize(u.float() / 127.5 - 1), u)  # data scaled to [-1, 1] comes back exactly
    assert F.quantize(torch.zeros(2, 3, 4, 4)).dtype == torch.uint8
    with pytest.raises(ValueError, match="NaN"):
        F.quantize(torch.tensor([0.0, float("nan")]))


def test_streaming_statistics_match_feature_statistics():
    ext = TinyFeatures()
    imgs = smooth_images(37)
    whole = F.compute_statistics(imgs, ext, batch_size=10)
    batches = F.compute_statistics([imgs[:5], imgs[5:6], imgs[6:]], ext)
    mu, sigma = feature_statistics(ext(imgs))
    for s in (whole, batches):
        assert s.n == 37 and s.extractor == "tiny-test"
        np.testing.assert_allclose(s.mu, mu, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(s.sigma, sigma, rtol=1e-8, atol=1e-12)


def test_fid_zero_on_itself_and_grows_with_perturbation():
    ext = TinyFeatures()
    imgs = smooth_images(96)
    ref = F.compute_statistics(imgs, ext)
    same = F.fid(F.compute_statistics(imgs, ext, batch_size=7), ref)
    fids = [F.fid(F.compute_statistics(perturb(imgs, s), ext), ref) for s in (8, 32, 96)]
    assert abs(same) < 1e-8
    assert 0 < fids[0] < fids[1] < fids[2]


def test_fid_refuses_mixed_extractors():
    imgs = smooth_images(8)
    a = F.compute_statistics(imgs, TinyFeatures(name="a"))
    b = F.compute_statistics(imgs, TinyFeatures(name="b"))
    with pytest.raises(ValueError, match="different extractors"):
        F.fid(a, b)


def test_bad_images_and_features():
    ext = TinyFeatures()
    with pytest.raises(ValueError, match="uint8"):
        F.compute_statistics(smooth_images(4).float(), ext)
    with pytest.raises(ValueError, match="at least 2"):
        F.compute_statistics(smooth_images(1), ext)
    with pytest.raises(ValueError, match="features"):
        F.compute_statistics(smooth_images(4), lambda x: torch.zeros(len(x) + 1, 3))


def test_reference_statistics_train_split_and_cache(tmp_path):
    make_fake_cifar10(tmp_path / "cifar", n_per_batch=6)
    ext = TinyFeatures()
    stats = F.reference_statistics(tmp_path / "cifar", ext, cache_dir=tmp_path / "cache", batch_size=8)
    train = np.concatenate([fake_cifar10_arrays(n_per_batch=6)[f"data_batch_{i}"][0] for i in range(1, 6)])
    expected = F.compute_statistics(torch.from_numpy(train).reshape(-1, 3, 32, 32), ext)
    assert stats.n == 30 and ext.seen == 60 and stats.source == "cifar10-train"
    np.testing.assert_allclose(stats.sigma, expected.sigma, rtol=1e-10)
    cached = tmp_path / "cache" / "cifar10-train-tiny-test.npz"
    assert cached.is_file()

    def must_not_run(x):
        raise AssertionError("the cached statistics should have been loaded")

    loaded = F.reference_statistics(tmp_path / "cifar", must_not_run, cache_dir=tmp_path / "cache",
                                    name="tiny-test")
    assert loaded.n == 30 and loaded.extractor == "tiny-test"
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    # another extractor gets its own file; a nameless one cannot be cached
    F.reference_statistics(tmp_path / "cifar", TinyFeatures(name="other"), cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "cifar10-train-other.npz").is_file()
    with pytest.raises(ValueError, match="name"):
        F.reference_statistics(tmp_path / "cifar", lambda x: x.float().flatten(1), cache_dir=tmp_path / "c2")
    with pytest.raises(FileNotFoundError):
        F.reference_statistics(tmp_path / "missing", ext, cache_dir=tmp_path / "c3")
    # a cache file renamed from another network's, or corrupt, is refused rather than silently used
    (tmp_path / "cache" / "cifar10-train-other.npz").replace(cached)
    with pytest.raises(ValueError, match="'other'.*delete it"):
        F.reference_statistics(tmp_path / "cifar", ext, cache_dir=tmp_path / "cache")
    cached.write_bytes(b"not an npz file")
    with pytest.raises(ValueError, match="not a readable statistics file"):
        F.reference_statistics(tmp_path / "cifar", ext, cache_dir=tmp_path / "cache")


def test_fid_from_sampler_quantizes_batches_and_warns():
    ext = TinyFeatures()
    imgs = smooth_images(23)
    ref = dataclasses.replace(F.compute_statistics(imgs, ext), source="cifar10-train")
    calls = []

    def sample_fn(b):  # the reference images themselves, as floats in [-1, 1], plus sub-quantum noise
        start = sum(calls)
        calls.append(b)
        x = imgs[start:start + b].float() / 127.5 - 1
        return x + (torch.rand(x.shape) - 0.5) * 0.9 / 127.5

    with pytest.warns(F.NotComparableWarning, match="23 samples"):
        value = F.fid_from_sampler(sample_fn, 23, ext, ref, batch_size=10)
    assert calls == [10, 10, 3]
    assert abs(value) < 1e-8  # quantization recovers the exact uint8 images


def test_protocol_flag():
    ref = F.FeatureStats(np.zeros(2), np.eye(2), 50_000, "x", "cifar10-train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert F.check_protocol(F.PAPER_NUM_SAMPLES, ref)
    with pytest.warns(F.NotComparableWarning):
        assert not F.check_protocol(50_000, dataclasses.replace(ref, source="cifar10-test"))


def test_sampler_errors():
    ref = F.FeatureStats(np.zeros(24), np.eye(24), 10, "tiny-test", "cifar10-train")
    with pytest.warns(F.NotComparableWarning), pytest.raises(ValueError, match="sample_fn"):
        F.fid_from_sampler(lambda b: torch.zeros(b + 1, 3, 8, 8), 4, TinyFeatures(), ref)
    with pytest.warns(F.NotComparableWarning), pytest.raises(ValueError, match="NaN"):
        F.fid_from_sampler(lambda b: torch.full((b, 3, 8, 8), float("nan")), 4, TinyFeatures(), ref)


def refuse_download(url, dst, *args, **kwargs):
    raise urllib.error.URLError("network blocked by the test")


def test_inception_offline_error_says_how_to_get_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_download)
    with pytest.raises(RuntimeError, match="weights_path") as err:
        F.inception_extractor("cpu", cache_dir=tmp_path)
    msg = str(err.value)
    assert F.inception_url() in msg and str(tmp_path / F.inception_url().rsplit("/", 1)[1]) in msg
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        F.inception_extractor("cpu", weights_path=tmp_path / "nowhere.pth")
    (tmp_path / "truncated.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="truncated.pth is not a torch-fidelity Inception"):
        F.inception_extractor("cpu", weights_path=tmp_path / "truncated.pth")


def test_real_inception_architecture_with_random_weights(monkeypatch, tmp_path):
    """The whole torch-fidelity Inception path (TF resize, pool3) on CPU, fed through a simulated download."""
    weights = F.random_inception_weights(tmp_path / "random.pth", seed=0)
    fetched = []

    def fake_download(url, dst, *args, **kwargs):
        fetched.append(url)
        dst_path = tmp_path / "hub" / url.rsplit("/", 1)[1]
        assert str(dst_path) == str(dst)
        dst_path.write_bytes(weights.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    ext = F.inception_extractor("cpu", cache_dir=tmp_path / "hub")
    assert fetched == [F.inception_url()]
    assert ext.name != F.INCEPTION_NAME  # random weights never pass for the real network
    imgs = torch.stack([smooth_images(1, seed=0)[0], smooth_images(1, seed=1)[0]])
    feats = ext(imgs)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert (feats >= 0).all() and (feats[0] - feats[1]).abs().max() > 0  # pooled ReLUs, image-dependent
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_download)
    again = F.inception_extractor("cpu", cache_dir=tmp_path / "hub")  # cached file: no second download
    torch.testing.assert_close(again(imgs), feats)


def test_evaluate_cifar10_run_with_injected_extractor(tmp_path):
    from cmlearn.train.evaluate import evaluate_cifar10
    from cmlearn.train.presets import cifar10_cd
    from cmlearn.train.runs import Run

    make_fake_cifar10(tmp_path / "cifar", n_per_batch=4)
    cfg = dataclasses.replace(cifar10_cd("smoke"), data_root=str(tmp_path / "cifar"))

    class Squash(nn.Module):  # a stand-in consistency model: f(x, t) = tanh(x / t)
        eps, T = cfg.eps, cfg.T

        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            return torch.tanh(x / torch.as_tensor(t)) + self.p

    run = Run(cfg=cfg, model=Squash(), path=tmp_path / "run", step=0, shape=(3, 32, 32))
    with pytest.warns(F.NotComparableWarning):
        res = evaluate_cifar10(run, n=12, batch_size=5, extractor=TinyFeatures())
    assert res["comparable_to_paper"] is False and res["reference"] == "cifar10-train" and res["n"] == 12
    assert res["fid_1step"] > 0 and res["fid_2step"] > 0
    assert res["taus_2step"][0] == cfg.T and abs(res["taus_2step"][1] - 0.5853) < 1e-3
    assert (tmp_path / "cifar" / "fid-stats" / "cifar10-train-tiny-test.npz").is_file()
