"""A small UNet F_theta(x, c_noise) for tiny square images (8x8 digits), after EDM's SongUNet / ADM, reduced.

GroupNorm + SiLU residual blocks with an adaptive scale/shift from the noise embedding, optional
self-attention at chosen resolutions, average-pool down / nearest up, skip connections from every encoder
block (ADM layout).
Called as ``net(x, c_noise)`` with c_noise = 0.25 log(t) (paper App. C); returns a tensor shaped like x.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cmlearn.nets.layers import EDM_ORDER, FOURIER_SCALE, FourierEmbedding, PositionalEmbedding


def _zero_init(layer: nn.Module, scale: float = 1e-5) -> nn.Module:
    """Near-zero init (EDM's init_zero): branches start near zero, yet all weights get gradients."""
    with torch.no_grad():
        layer.weight.mul_(scale)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(h) (1 + scale) + shift)), h = conv(SiLU(GN(x))); scale, shift from the embedding."""

    def __init__(self, cin: int, cout: int, emb_dim: int, *, dropout: float = 0.0, groups: int = 8,
                 attention: bool = False, heads: int = 1):
        super().__init__()
        self.norm0 = nn.GroupNorm(min(groups, cin), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * cout)
        self.norm1 = nn.GroupNorm(min(groups, cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _zero_init(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.heads = heads
        if attention:
            if cout % heads:
                raise ValueError(f"channels {cout} not divisible by attention heads {heads}")
            self.norm2 = nn.GroupNorm(min(groups, cout), cout)
            self.qkv = nn.Conv2d(cout, 3 * cout, 1)
            self.proj = _zero_init(nn.Conv2d(cout, cout, 1))
        self.attention = attention

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, cin, H, W), emb: (B, emb_dim) -> (B, cout, H, W)."""
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(h) * (1 + scale) + shift)
        h = self.conv1(self.dropout(h))
        x = (self.skip(x) + h) / math.sqrt(2)
        if self.attention:
            b, c, hh, ww = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(b, 3, self.heads, c // self.heads, hh * ww).unbind(1)
            a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
            x = (x + self.proj(a.transpose(-1, -2).reshape(b, c, hh, ww))) / math.sqrt(2)
        return x


class UNet(nn.Module):
    """F_theta(x, c_noise) for (B, C, R, R) images; R must be divisible by 2**(len(channel_mult) - 1).

    Level i works at resolution R / 2**i with ``channels * channel_mult[i]`` channels and ``num_blocks`` res
    blocks (``num_blocks + 1`` on the way up); attention in the blocks whose resolution is in
    ``attn_resolutions``, and always in the first of the two middle blocks. ``n_times`` > 1 takes c_noise of
    shape (B, n_times) (MeanFlow's (t, t - r)): each column through the same noise mapping, the embeddings summed.
    """

    def __init__(self, *, img_resolution: int = 8, in_channels: int = 1, out_channels: int | None = None,
                 channels: int = 32, channel_mult: tuple[int, ...] = (1, 2, 2), num_blocks: int = 1,
                 attn_resolutions: tuple[int, ...] = (4,), dropout: float = 0.0, emb_dim: int | None = None,
                 embedding: str = "fourier", fourier_scale: float = FOURIER_SCALE, groups: int = 8, heads: int = 1,
                 n_times: int = 1):
        super().__init__()
        if n_times < 1:
            raise ValueError(f"n_times must be >= 1, got n_times={n_times}")
        self.n_times = n_times
        levels = len(channel_mult)
        if levels < 1 or channels < 1 or num_blocks < 1 or in_channels < 1:
            raise ValueError(f"need channel_mult non-empty and channels, num_blocks, in_channels >= 1, got "
                             f"channel_mult={channel_mult}, channels={channels}, num_blocks={num_blocks}, "
                             f"in_channels={in_channels}")
        if img_resolution < 1 or img_resolution % 2 ** (levels - 1):
            raise ValueError(f"img_resolution {img_resolution} must be divisible by 2**(levels-1) = "
                             f"{2 ** (levels - 1)} for channel_mult={channel_mult}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if embedding not in ("fourier", "positional"):
            raise ValueError(f"embedding must be 'fourier' or 'positional', got {embedding!r}")
        self.img_resolution, self.in_channels = img_resolution, in_channels
        self.out_channels = out_channels or in_channels
        emb_dim = emb_dim or 4 * channels
        if emb_dim % 2:
            raise ValueError(f"emb_dim must be even, got {emb_dim}")
        if embedding == "fourier":
            base = FourierEmbedding(channels, scale=fourier_scale, order=EDM_ORDER)
        else:
            base = PositionalEmbedding(channels)
        self.map_noise = nn.Sequential(base, nn.Linear(channels, emb_dim), nn.SiLU(),
                                       nn.Linear(emb_dim, emb_dim), nn.SiLU())
        kw = dict(dropout=dropout, groups=groups, heads=heads)

        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.enc = nn.ModuleList()
        skips, c, res = [channels], channels, img_resolution
        for i, mult in enumerate(channel_mult):
            if i > 0:
                self.enc.append(nn.AvgPool2d(2))
                res //= 2
                skips.append(c)
            for _ in range(num_blocks):
                attn = res in attn_resolutions
                self.enc.append(ResBlock(c, channels * mult, emb_dim, attention=attn, **kw))
                c = channels * mult
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, attention=True, **kw),
                                  ResBlock(c, c, emb_dim, **kw)])
        self.dec = nn.ModuleList()
        for i, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_blocks + 1):
                self.dec.append(ResBlock(c + skips.pop(), channels * mult, emb_dim,
                                         attention=res in attn_resolutions, **kw))
                c = channels * mult
            if i > 0:
                self.dec.append(nn.Upsample(scale_factor=2, mode="nearest"))
                res *= 2
        self.norm_out = nn.GroupNorm(min(groups, c), c)
        self.conv_out = _zero_init(nn.Conv2d(c, self.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, R, R), c_noise: (B,) (or (B, n_times)) -> (B, out_channels, R, R)."""
        r = self.img_resolution
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, r, r):
            raise ValueError(f"x must have shape (B, {self.in_channels}, {r}, {r}), got {tuple(x.shape)}")
        want = (x.shape[0],) if self.n_times == 1 else (x.shape[0], self.n_times)
        if c_noise.shape != want:
            raise ValueError(f"c_noise must have shape {want}, got {tuple(c_noise.shape)}")
        c = c_noise.to(x.dtype).reshape(x.shape[0], -1)
        emb = sum(self.map_noise(c[:, i]) for i in range(self.n_times))
        h = self.conv_in(x)
        hs = [h]
        for layer in self.enc:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for layer in self.dec:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb) if isinstance(layer, ResBlock) else layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))
