"""LPIPS distance d (cmlearn.core.perceptual): the real lpips.LPIPS with a random VGG backbone (pretrained=False)
and the calibrated linear layers bundled in the pip package, so nothing is downloaded."""

import urllib.error

import pytest
import torch

from cmlearn.core.perceptual import LPIPSDistance


@pytest.fixture(scope="module")
def dist():
    torch.manual_seed(0)  # the random VGG backbone
    return LPIPSDistance(pretrained=False)


@pytest.fixture
def dist64(dist, monkeypatch):
    """The same network at resize 64 (much faster than 224); the attribute is restored after the test."""
    monkeypatch.setattr(dist, "resize", 64)
    return dist


def images(b, c=3, s=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, s, s, generator=g) * 2 - 1


def test_frozen_eval_and_bundled_linear_layers(dist):
    import inspect
    from pathlib import Path

    import lpips

    assert all(not p.requires_grad for p in dist.parameters())
    dist.train()
    assert not dist.lpips.training and not any(m.training for m in dist.lpips.modules())
    bundled = Path(inspect.getfile(lpips.LPIPS)).parent / "weights/v0.1/vgg.pth"
    shipped = torch.load(bundled, map_location="cpu")
    for k, v in shipped.items():  # the calibrated lin layers are loaded even with a random backbone
        torch.testing.assert_close(dist.lpips.state_dict()[k], v)


def test_identity_positive_symmetric_and_shape(dist64):
    x, y = images(3, seed=1), images(3, seed=2)
    with torch.no_grad():
        dxx, dxy, dyx = dist64(x, x), dist64(x, y), dist64(y, x)
    assert dxx.shape == dxy.shape == (3,)
    assert torch.all(dxx.abs() < 1e-6)
    assert torch.all(dxy > 1e-3)
    torch.testing.assert_close(dxy, dyx, rtol=1e-5, atol=1e-7)


def test_gradient_flows_to_inputs_not_parameters(dist64):
    x = images(2, seed=3).requires_grad_(True)
    y = images(2, seed=4)
    dist64(x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in dist64.parameters())


def test_resize_to_224_is_applied(dist):
    seen = []
    hook = dist.lpips.net.slice1.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
    try:
        with torch.no_grad():
            out = dist(images(2, s=32, seed=5), images(2, s=32, seed=6))
    finally:
        hook.remove()
    assert out.shape == (2,)
    assert seen == [(2, 3, 224, 224), (2, 3, 224, 224)]


def test_resize_none_keeps_size():
    torch.manual_seed(0)
    d = LPIPSDistance(pretrained=False, resize=None, net="alex")
    seen = []
    d.lpips.net.slice1.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
    with torch.no_grad():
        d(images(1, s=48), images(1, s=48, seed=1))
    assert seen == [(1, 3, 48, 48)] * 2


def test_one_channel_equals_repeated_rgb(dist64):
    x, y = images(2, c=1, seed=7), images(2, c=1, seed=8)
    with torch.no_grad():
        d1 = dist64(x, y)
        d3 = dist64(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1))
    assert d1.shape == (2,)
    torch.testing.assert_close(d1, d3)


@pytest.mark.parametrize("kw", [{"net": "resnet"}, {"resize": 16}, {"resize": 224.0}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError, match=str(next(iter(kw.values())))):
        LPIPSDistance(pretrained=False, **kw)


def test_bad_inputs(dist64):
    with pytest.raises(ValueError, match="same shape"):
        dist64(images(2), images(3))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        dist64(images(2, c=2), images(2, c=2))


def test_offline_pretrained_backbone_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch.hub cache

    def refuse(url, dst, *a, **k):
        raise urllib.error.URLError("network blocked by the test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(RuntimeError, match=r"vgg16-397923af\.pth") as err:
        LPIPSDistance(net="vgg", pretrained=True)
    assert "download.pytorch.org" in str(err.value) and str(tmp_path) in str(err.value)
