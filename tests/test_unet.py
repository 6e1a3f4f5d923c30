import math

import pytest
import torch

from cmlearn.nets.layers import EDM_ORDER, FourierEmbedding, PositionalEmbedding
from cmlearn.nets.mlp import MLP
from cmlearn.nets.unet import UNet


@pytest.mark.parametrize("res,kw", [(8, {}), (16, dict(channel_mult=(1, 2, 2), attn_resolutions=(8, 4))),
                                    (8, dict(embedding="positional", num_blocks=2, channel_mult=(1, 2)))])
def test_output_shape(res, kw):
    torch.manual_seed(0)
    net = UNet(img_resolution=res, channels=16, **kw)
    x = torch.randn(3, 1, res, res)
    out = net(x, torch.randn(3))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_multichannel_and_output_channels():
    net = UNet(img_resolution=8, in_channels=3, out_channels=2, channels=16)
    assert net(torch.randn(2, 3, 8, 8), torch.zeros(2)).shape == (2, 2, 8, 8)


def test_gradients_flow_to_every_parameter_and_depend_on_noise_level():
    torch.manual_seed(0)
    net = UNet(channels=16)
    x = torch.randn(4, 1, 8, 8)
    c = torch.randn(4)
    net(x, c).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # the output depends on c_noise once the near-zero-initialized layers have moved
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        assert not torch.allclose(net(x, torch.zeros(4)), net(x, torch.ones(4)))


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    net = UNet(channels=16, dropout=0.3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, c = torch.randn(4, 1, 8, 8), torch.randn(4)
    net.eval()
    assert torch.equal(net(x, c), net(x, c))
    net.train()
    assert not torch.equal(net(x, c), net(x, c))


def test_default_size_is_small():
    n = sum(p.numel() for p in UNet().parameters())
    assert 2e5 < n < 1.5e6, n


@pytest.mark.parametrize("kw", [dict(img_resolution=6), dict(channel_mult=()), dict(dropout=1.0),
                                dict(embedding="sinusoid"), dict(emb_dim=33)])
def test_bad_config(kw):
    with pytest.raises(ValueError):
        UNet(**kw)


def test_bad_input_shapes():
    net = UNet(channels=16)
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(2, 1, 16, 16), torch.zeros(2))
    with pytest.raises(ValueError, match="c_noise"):
        net(torch.randn(2, 1, 8, 8), torch.zeros(3))


def test_mlp_and_unet_embed_c_noise_in_edms_order():
    """EDM's FourierEmbedding: freqs ~ N(0, scale^2) (num_channels / 2 of them), [cos(2 pi c f), sin(2 pi c f)]."""
    c = torch.tensor([-1.5, 0.0, 0.7])
    for emb, scale in [(UNet(channels=16).map_noise[0], 16.0), (MLP(2, emb_dim=8).embed[0], 1.0)]:
        assert isinstance(emb, FourierEmbedding) and emb.order == EDM_ORDER
        f = emb.freqs
        assert torch.equal(f, torch.randn(len(f), generator=torch.Generator().manual_seed(0)) * scale)
        arg = c.ger(2 * math.pi * f)
        assert torch.allclose(emb(c), torch.cat([arg.cos(), arg.sin()], dim=1), atol=1e-4)
    pos = UNet(channels=16, embedding="positional").map_noise[0]
    assert isinstance(pos, PositionalEmbedding) and pos(c).shape == (3, 16)


def test_fourier_embedding_orders_and_bad_arguments():
    c = torch.randn(5)
    sin_cos, cos_sin = FourierEmbedding(8)(c), FourierEmbedding(8, order=EDM_ORDER)(c)
    assert sin_cos.shape == (5, 8) and torch.equal(sin_cos[:, :4], cos_sin[:, 4:])  # the same features, permuted
    with pytest.raises(ValueError, match="even"):
        FourierEmbedding(7)
    with pytest.raises(ValueError, match="order"):
        FourierEmbedding(8, order=("sin", "sin"))
    with pytest.raises(ValueError, match="even"):
        PositionalEmbedding(5)
