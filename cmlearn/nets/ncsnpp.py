"""NCSN++ (Song et al., ICLR 2021): the CIFAR-10 backbone F_theta(x, c_noise) of Consistency Models (App. C).

Implements the ``NCSNpp`` of score_sde / consistency_models_cifar10 in the configuration the paper uses:
Gaussian Fourier embedding of c_noise ([sin, cos] of 2 pi c W, nf fixed frequencies W ~ N(0, 16^2):
cmlearn.nets.layers.FourierEmbedding in SCORE_SDE_ORDER) and a 2-layer SiLU MLP; BigGAN residual blocks that also
do the up/downsampling with the FIR filter [1, 3, 3, 1]; skip_rescale (every residual sum divided by
sqrt(2)); single-head self-attention at 16x16 and in the middle; progressive input "residual" (a FIR-conv
pyramid of the input image added at every downsampling); progressive output "none" (GroupNorm, SiLU,
3x3 conv). 56.4M parameters for CIFAR-10. Initialisation as in score_sde: Xavier-uniform weights, zero
biases, output layers scaled by ``init_scale`` (0 means 1e-10, so a fresh net outputs almost exactly zero).

Left out (unused by the paper's CIFAR-10 configs): DDPM-style resblocks, progressive output
"output_skip"/"residual", progressive input "input_skip", "cat" combination, positional time embedding,
class conditioning, scale_by_sigma, the [0, 1] -> [-1, 1] input recentering (data already lie in [-1, 1]
and c_in is applied by the caller), and the custom CUDA upfirdn2d kernel (here FIR resampling is a
depthwise conv with the same zero-padded result).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cmlearn.nets.layers import FOURIER_SCALE, SCORE_SDE_ORDER, FourierEmbedding

SQRT2 = math.sqrt(2.0)

CIFAR10_CONFIG: Mapping[str, Any] = MappingProxyType(dict(
    in_channels=3, resolution=32, nf=128, ch_mult=(2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
    fourier_scale=FOURIER_SCALE))
"""The paper's CIFAR-10 NCSN++ (App. C; score_sde's configs/ve/cifar10_ncsnpp_continuous.py): 56.4M parameters."""

SMOKE_CONFIG: Mapping[str, Any] = MappingProxyType(dict(
    CIFAR10_CONFIG, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()))
"""A tiny CPU NCSN++ with the same code path (attention only in the 16x16 middle block); the smoke presets' net."""

CONFIGS: Mapping[str, Mapping[str, Any]] = MappingProxyType({"cifar10": CIFAR10_CONFIG, "smoke": SMOKE_CONFIG})


def fir_kernel2d(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Separable 2D FIR kernel: the outer product of ``taps`` with itself, normalised to sum 1."""
    t = torch.as_tensor(taps, dtype=torch.float64)
    bad = t.ndim != 1 or len(t) < 2 or len(t) % 2 or not torch.equal(t, t.flip(0))
    if bad or (t < 0).any() or t.sum() <= 0:
        raise ValueError(f"fir taps must be symmetric, non-negative, of even length; got {list(taps)}")
    k = torch.outer(t, t)
    return (k / k.sum()).float()


def _depthwise(k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return k.to(device=x.device, dtype=x.dtype)[None, None].expand(x.shape[1], 1, *k.shape).contiguous()


def fir_downsample(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Blur with the FIR kernel and keep every second pixel (upfirdn2d with down=2): (H, W) -> (H/2, W/2)."""
    return F.conv2d(x, _depthwise(k, x), stride=2, padding=(k.shape[0] - 2) // 2, groups=x.shape[1])


def fir_upsample(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Zero-insertion upsampling filtered by 4 * kernel (upfirdn2d with up=2): (H, W) -> (2H, 2W)."""
    pad = (k.shape[0] - 2) // 2
    return F.conv_transpose2d(x, _depthwise(4 * k, x), stride=2, padding=pad, groups=x.shape[1])


def _init(layer: nn.Module, scale: float = 1.0) -> nn.Module:
    """score_sde's default_init: Xavier-uniform (fan_avg) weights times ``scale`` (0 -> 1e-10), zero bias."""
    nn.init.xavier_uniform_(layer.weight, gain=math.sqrt(scale if scale > 0 else 1e-10))
    nn.init.zeros_(layer.bias)
    return layer


def _conv(cin: int, cout: int, kernel: int = 3, *, scale: float = 1.0, stride: int = 1,
          padding: int | None = None) -> nn.Conv2d:
    pad = kernel // 2 if padding is None else padding
    return _init(nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad), scale)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(ch // 4, 32), ch, eps=1e-6)


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels with a residual sum (score_sde's AttnBlockpp)."""

    def __init__(self, ch: int, *, skip_rescale: bool = True, init_scale: float = 0.0):
        super().__init__()
        self.norm, self.qkv = _norm(ch), _conv(ch, 3 * ch, 1)
        self.proj, self.skip_rescale = _conv(ch, ch, 1, scale=init_scale), skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, ch, H, W) -> (B, ch, H, W)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, 1, c, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)  # (b, 1, hw, c), softmax(q k^T / sqrt(c)) v
        y = self.proj(y.transpose(-1, -2).reshape(b, c, h, w))
        return (x + y) / SQRT2 if self.skip_rescale else x + y


class ResBlock(nn.Module):
    """BigGAN residual block (score_sde's ResnetBlockBigGANpp), optional FIR resampling, then attention."""

    def __init__(self, cin: int, cout: int, emb_ch: int, *, up: bool = False, down: bool = False,
                 attention: bool = False, dropout: float = 0.0, fir: torch.Tensor, skip_rescale: bool = True,
                 init_scale: float = 0.0):
        super().__init__()
        self.up, self.down, self.skip_rescale = up, down, skip_rescale
        self.register_buffer("fir", fir.clone(), persistent=False)
        self.norm0, self.conv0 = _norm(cin), _conv(cin, cout)
        self.emb = _init(nn.Linear(emb_ch, cout))
        self.norm1, self.dropout = _norm(cout), nn.Dropout(dropout)
        self.conv1 = _conv(cout, cout, scale=init_scale)
        self.skip = _conv(cin, cout, 1) if (cin != cout or up or down) else None
        self.attn = AttnBlock(cout, skip_rescale=skip_rescale, init_scale=init_scale) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, cin, H, W), emb: (B, emb_ch) -> (B, cout, H', W'), H' = 2H up, H/2 down, else H."""
        h = F.silu(self.norm0(x))
        if self.up:
            h, x = fir_upsample(h, self.fir), fir_upsample(x, self.fir)
        elif self.down:
            h, x = fir_downsample(h, self.fir), fir_downsample(x, self.fir)
        h = self.conv0(h) + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        if self.skip is not None:
            x = self.skip(x)
        x = (x + h) / SQRT2 if self.skip_rescale else x + h
        return self.attn(x) if self.attn is not None else x


class PyramidDown(nn.Module):
    """Progressive-input "residual" path: FIR blur, stride-2 3x3 conv (score_sde's conv_downsample_2d)."""

    def __init__(self, cin: int, cout: int, *, fir: torch.Tensor):
        super().__init__()
        self.register_buffer("fir", fir.clone(), persistent=False)
        self.conv = _conv(cin, cout, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, cin, H, W) -> (B, cout, H/2, W/2)."""
        pad = self.fir.shape[0] // 2
        x = F.conv2d(x, _depthwise(self.fir, x), padding=pad, groups=x.shape[1])  # (H + 1, W + 1)
        return self.conv(x)


class NCSNpp(nn.Module):
    """NCSN++ U-Net F_theta(x, c_noise) -> tensor shaped like x; defaults: CIFAR10_CONFIG, the paper's net."""

    def __init__(self, *, in_channels: int = 3, resolution: int = 32, nf: int = 128,
                 ch_mult: Sequence[int] = (2, 2, 2), num_res_blocks: int = 4,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0,
                 fir_taps: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True,
                 fourier_scale: float = FOURIER_SCALE, init_scale: float = 0.0, seed: int = 0):
        super().__init__()
        ch_mult, attn_resolutions = tuple(int(m) for m in ch_mult), tuple(int(r) for r in attn_resolutions)
        if in_channels < 1 or nf < 4 or nf % 4 or num_res_blocks < 1 or not ch_mult or min(ch_mult) < 1:
            raise ValueError(f"need in_channels >= 1, nf a positive multiple of 4, num_res_blocks >= 1, "
                             f"ch_mult >= 1; got in_channels={in_channels}, nf={nf}, "
                             f"num_res_blocks={num_res_blocks}, ch_mult={ch_mult}")
        levels = [resolution >> i for i in range(len(ch_mult))]
        if resolution < 1 or resolution % (1 << (len(ch_mult) - 1)):
            raise ValueError(f"resolution {resolution} must be divisible by 2^{len(ch_mult) - 1} "
                             f"(ch_mult={ch_mult})")
        if not set(attn_resolutions) <= set(levels):
            raise ValueError(f"attn_resolutions {attn_resolutions} must be among the levels {levels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.resolution = in_channels, resolution
        self.skip_rescale = skip_rescale
        fir = fir_kernel2d(fir_taps)
        emb_ch = 4 * nf
        self.fourier = FourierEmbedding(2 * nf, scale=fourier_scale, seed=seed, order=SCORE_SDE_ORDER)
        self.emb0, self.emb1 = _init(nn.Linear(2 * nf, emb_ch)), _init(nn.Linear(emb_ch, emb_ch))
        block = dict(emb_ch=emb_ch, dropout=dropout, fir=fir, skip_rescale=skip_rescale,
                     init_scale=init_scale)

        # Encoder: names ending in _down / _pyramid resample, every other block's output is kept as a skip.
        self.conv_in = _conv(in_channels, nf)
        self.enc = nn.ModuleDict()
        skips, ch, pyr_ch = [nf], nf, in_channels
        for lvl, (res, mult) in enumerate(zip(levels, ch_mult)):
            for i in range(num_res_blocks):
                self.enc[f"{res}x{res}_block{i}"] = ResBlock(ch, nf * mult, attention=res in attn_resolutions,
                                                             **block)
                ch = nf * mult
                skips.append(ch)
            if lvl < len(levels) - 1:
                self.enc[f"{res // 2}x{res // 2}_down"] = ResBlock(ch, ch, down=True, **block)
                self.enc[f"{res // 2}x{res // 2}_pyramid"] = PyramidDown(pyr_ch, ch, fir=fir)
                pyr_ch = ch
                skips.append(ch)

        # Middle and decoder: _block eats a skip (concatenated), _up upsamples; attention on a level's last.
        res = levels[-1]
        self.dec = nn.ModuleDict()
        self.dec[f"{res}x{res}_mid0"] = ResBlock(ch, ch, attention=True, **block)
        self.dec[f"{res}x{res}_mid1"] = ResBlock(ch, ch, **block)
        for lvl in reversed(range(len(levels))):
            res = levels[lvl]
            for i in range(num_res_blocks + 1):
                attn = i == num_res_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{i}"] = ResBlock(ch + skips.pop(), nf * ch_mult[lvl],
                                                             attention=attn, **block)
                ch = nf * ch_mult[lvl]
            if lvl > 0:
                self.dec[f"{res * 2}x{res * 2}_up"] = ResBlock(ch, ch, up=True, **block)
        assert not skips
        self.norm_out, self.conv_out = _norm(ch), _conv(ch, in_channels, scale=init_scale)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, resolution, resolution), c_noise: (B,) or a scalar -> shaped like x."""
        shape = (self.in_channels, self.resolution, self.resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        c_noise = torch.as_tensor(c_noise, device=x.device)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(x.shape[0])
        if c_noise.shape != (x.shape[0],):
            raise ValueError(f"c_noise must have shape ({x.shape[0]},), got {tuple(c_noise.shape)}")
        emb = self.fourier(c_noise).to(x.dtype)
        emb = self.emb1(F.silu(self.emb0(emb)))

        h, pyr = self.conv_in(x), x
        skips = [h]
        for name, blk in self.enc.items():
            if name.endswith("_pyramid"):  # progressive input "residual"
                pyr = blk(pyr)
                h = pyr = (pyr + h) / SQRT2 if self.skip_rescale else pyr + h
                skips.append(h)
            elif name.endswith("_down"):
                h = blk(h, emb)
            else:
                h = blk(h, emb)
                skips.append(h)
        for name, blk in self.dec.items():
            h = blk(torch.cat([h, skips.pop()], dim=1) if "_block" in name else h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def ncsnpp_config(config: str = "cifar10") -> dict[str, Any]:
    """A fresh copy of a named config in CONFIGS, JSON-ready (sequences as lists) for TrainConfig.net_kwargs.

    Lists, not tuples, so a config saved to config.json and loaded back compares equal (resuming a run).
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown NCSN++ config {config!r}; choose from {sorted(CONFIGS)}")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in CONFIGS[config].items()}


def ncsnpp(config: str = "cifar10", **overrides: Any) -> NCSNpp:
    """NCSNpp from a named config in CONFIGS ("cifar10": the paper's 56.4M net, "smoke": a tiny CPU one)."""
    return NCSNpp(**{**ncsnpp_config(config), **overrides})
