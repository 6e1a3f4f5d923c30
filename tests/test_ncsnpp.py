"""NCSN++: the paper's parameter count, shapes, gradients, determinism, channels_last and FIR resampling.

"smoke" below is exactly the net the CIFAR-10 smoke presets train (test_presets_take_their_nets_from_configs).
"""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from cmlearn.nets.layers import FourierEmbedding
from cmlearn.nets.ncsnpp import (
    CIFAR10_CONFIG,
    CONFIGS,
    SMOKE_CONFIG,
    AttnBlock,
    NCSNpp,
    fir_downsample,
    fir_kernel2d,
    fir_upsample,
    ncsnpp,
    ncsnpp_config,
)
from cmlearn.train.presets import PRESETS, get_preset
from cmlearn.train.runs import build_net

CIFAR_PRESETS = sorted(name for name in PRESETS if name.startswith("cifar10-"))


def _count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def big():
    torch.manual_seed(0)
    return ncsnpp("cifar10").eval()


def test_cifar10_parameter_count(big):
    assert abs(_count(big) - 56.4e6) / 56.4e6 < 0.01
    assert CONFIGS["cifar10"]["nf"] == 128 and CONFIGS["cifar10"]["ch_mult"] == (2, 2, 2)
    # NCSNpp()'s defaults are the paper's config, stated once (CIFAR10_CONFIG) and checked here
    defaults = {k: p.default for k, p in inspect.signature(NCSNpp).parameters.items()}
    assert {k: defaults[k] for k in CIFAR10_CONFIG} == dict(CIFAR10_CONFIG)


@pytest.mark.parametrize("name", CIFAR_PRESETS)
@pytest.mark.parametrize("size,config", [("full", "cifar10"), ("smoke", "smoke")])
def test_presets_take_their_nets_from_configs(name, size, config):
    cfg = get_preset(name, size=size)
    assert cfg.net == "ncsnpp"
    assert {k: v for k, v in cfg.net_kwargs.items() if k != "dropout"} == ncsnpp_config(config)
    if size == "smoke":  # the very net of the smoke run: same modules, same parameter count
        net = build_net(cfg)
        ref = ncsnpp("smoke")
        assert [n for n, _ in net.named_modules()] == [n for n, _ in ref.named_modules()]
        assert _count(net) == _count(ref)


def test_smoke_config_and_json_form():
    assert SMOKE_CONFIG["attn_resolutions"] == () and SMOKE_CONFIG["nf"] == 16
    attn = [n for n, m in ncsnpp("smoke").named_modules() if isinstance(m, AttnBlock)]
    assert attn == ["dec.16x16_mid0.attn"]  # attention only in the middle, as the smoke presets train it
    kw = ncsnpp_config("smoke")
    assert kw["ch_mult"] == [1, 2] and kw["attn_resolutions"] == []  # lists: equal after a config.json round trip
    kw["ch_mult"].append(4)
    assert ncsnpp_config("smoke")["ch_mult"] == [1, 2]  # a fresh copy every call
    with pytest.raises(TypeError):
        CONFIGS["smoke"]["nf"] = 8  # read-only


def test_fourier_embedding_is_score_sdes_gaussian_fourier_projection():
    """score_sde's GaussianFourierProjection: W ~ N(0, 16^2) of size nf, [sin(2 pi x W), cos(2 pi x W)]."""
    net = ncsnpp("smoke")
    w = net.fourier.freqs
    assert isinstance(net.fourier, FourierEmbedding) and w.shape == (16,)
    assert "fourier.freqs" in net.state_dict()
    assert torch.equal(w, torch.randn(16, generator=torch.Generator().manual_seed(0)) * 16.0)
    x = torch.tensor([-1.5, 0.0, 0.3, 1.1])
    proj = x[:, None] * w[None, :] * 2 * math.pi
    assert torch.allclose(net.fourier(x), torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1), atol=1e-4)


def test_cifar10_forward_batch_one(big):
    with torch.no_grad():
        y = big(torch.randn(1, 3, 32, 32), torch.tensor([0.25 * torch.log(torch.tensor(2.0)).item()]))
    assert y.shape == (1, 3, 32, 32) and torch.isfinite(y).all()


def test_smoke_shapes_and_c_noise_dependence():
    torch.manual_seed(0)
    net = ncsnpp("smoke", init_scale=1.0).eval()
    x = torch.randn(2, 3, 32, 32)
    y0, y1 = net(x, torch.zeros(2)), net(x, torch.ones(2))
    assert y0.shape == x.shape
    assert (y0 - y1).abs().max() > 1e-3  # the time embedding reaches the output
    gray = NCSNpp(in_channels=1, resolution=16, nf=8, ch_mult=(1, 2, 2), num_res_blocks=1,
                  attn_resolutions=(8,))
    assert gray(torch.randn(3, 1, 16, 16), torch.randn(3)).shape == (3, 1, 16, 16)


def test_fresh_net_outputs_near_zero():
    """init_scale 0 (score_sde's default): output layers start at scale 1e-10, so F_theta starts near 0."""
    torch.manual_seed(0)
    y = ncsnpp("smoke")(torch.randn(2, 3, 32, 32), torch.randn(2))
    assert y.abs().max() < 1e-3


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    net = ncsnpp("smoke", init_scale=1.0)
    net(torch.randn(2, 3, 32, 32), torch.randn(2)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, name
    torch.manual_seed(0)
    net = ncsnpp("smoke")  # default init: the (tiny) output layer still gets a useful gradient
    (net(torch.randn(2, 3, 32, 32), torch.randn(2)) - 1).square().mean().backward()
    assert net.conv_out.weight.grad.abs().max() > 1e-3


def test_eval_is_deterministic_and_dropout_is_live_in_train():
    torch.manual_seed(0)
    net = ncsnpp("smoke", init_scale=1.0, dropout=0.3)
    x, c = torch.randn(2, 3, 32, 32), torch.randn(2)
    net.eval()
    assert torch.equal(net(x, c), net(x, c))
    net.train()
    assert not torch.allclose(net(x, c), net(x, c))


def test_channels_last_matches():
    torch.manual_seed(0)
    net = ncsnpp("smoke", init_scale=1.0).eval()
    x, c = torch.randn(2, 3, 32, 32), torch.randn(2)
    ref = net(x, c)
    net = net.to(memory_format=torch.channels_last)
    y = net(x.contiguous(memory_format=torch.channels_last), c)
    assert torch.allclose(y, ref, atol=1e-5)


def test_scalar_c_noise_broadcasts_and_bad_inputs_raise():
    net = ncsnpp("smoke").eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x, torch.tensor(0.5)), net(x, torch.full((2,), 0.5)))
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(2, 3, 16, 16), torch.zeros(2))
    with pytest.raises(ValueError, match="c_noise"):
        net(x, torch.zeros(3))
    with pytest.raises(ValueError, match="attn_resolutions"):
        NCSNpp(nf=16, ch_mult=(1, 2), attn_resolutions=(8,))
    with pytest.raises(ValueError, match="resolution"):
        NCSNpp(nf=16, ch_mult=(1, 2, 2), resolution=30, attn_resolutions=())
    with pytest.raises(ValueError, match="unknown"):
        ncsnpp("imagenet")
    with pytest.raises(ValueError, match="fir"):
        fir_kernel2d((1, 3, 1))


def _upfirdn_reference(x, k, *, up, down, pad):
    """Plain upfirdn2d: zero-insert by ``up``, zero-pad (pad0, pad1), correlate with k, keep every down-th."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    x = F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)
    return x[:, :, ::down, ::down]


def test_fir_resampling_matches_upfirdn_and_keeps_constants():
    k = fir_kernel2d((1, 3, 3, 1))
    assert k.shape == (4, 4) and abs(k.sum().item() - 1) < 1e-6
    x = torch.randn(2, 5, 8, 8)
    down, up = fir_downsample(x, k), fir_upsample(x, k)
    assert down.shape == (2, 5, 4, 4) and up.shape == (2, 5, 16, 16)
    assert torch.allclose(down, _upfirdn_reference(x, k, up=1, down=2, pad=(1, 1)), atol=1e-6)
    assert torch.allclose(up, _upfirdn_reference(x, 4 * k, up=2, down=1, pad=(2, 1)), atol=1e-6)
    # A constant image stays constant away from the one-pixel zero-padded border (as in upfirdn2d).
    ones = torch.full((1, 3, 16, 16), 0.7)
    d, u = fir_downsample(ones, k), fir_upsample(ones, k)
    assert torch.allclose(d[..., 1:-1, 1:-1], torch.tensor(0.7))
    assert torch.allclose(u[..., 1:-1, 1:-1], torch.tensor(0.7))
    assert torch.allclose(fir_upsample(d, k)[..., 3:-3, 3:-3], torch.tensor(0.7))
