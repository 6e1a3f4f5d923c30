"""An MLP backbone for points of any dimension, conditioned on c_noise(t) through a Fourier embedding."""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar: [cos(2 pi w c), sin(2 pi w c)] with fixed w ~ N(0, scale^2)."""

    def __init__(self, dim: int, *, scale: float = 1.0, seed: int = 0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        w = torch.randn(dim // 2, generator=torch.Generator().manual_seed(seed)) * scale
        self.register_buffer("freqs", w)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * c[:, None].to(self.freqs.dtype) * self.freqs[None]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class MLP(nn.Module):
    """F_theta(x, c_noise): input x concatenated with a time embedding, ``depth`` SiLU layers of ``width``."""

    def __init__(self, dim: int = 2, *, width: int = 256, depth: int = 4, emb_dim: int = 64,
                 fourier_scale: float = 1.0, dropout: float = 0.0):
        super().__init__()
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"dim, width and depth must be >= 1, got dim={dim}, width={width}, depth={depth}")
        self.dim = dim
        self.embed = nn.Sequential(FourierEmbedding(emb_dim, scale=fourier_scale), nn.Linear(emb_dim, emb_dim),
                                   nn.SiLU())
        layers: list[nn.Module] = []
        d_in = dim + emb_dim
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), nn.SiLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d_in = width
        layers.append(nn.Linear(d_in, dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        return self.body(torch.cat([x, self.embed(c_noise.to(x.dtype))], dim=1))
