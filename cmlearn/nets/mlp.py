"""An MLP backbone for points of any dimension, conditioned on c_noise(t) through a Fourier embedding."""

from __future__ import annotations

import torch
from torch import nn

from cmlearn.nets.layers import EDM_ORDER, FourierEmbedding


class MLP(nn.Module):
    """F_theta(x, c_noise): input x concatenated with a time embedding, ``depth`` SiLU layers of ``width``.

    The embedding is FourierEmbedding(emb_dim, order=EDM_ORDER) then Linear + SiLU; ``fourier_scale``
    is 1, not the images' 16: for the toys c_noise = 0.25 log(t) spans only about [-1.6, 1.1].
    """

    def __init__(self, dim: int = 2, *, width: int = 256, depth: int = 4, emb_dim: int = 64,
                 fourier_scale: float = 1.0, dropout: float = 0.0):
        super().__init__()
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"dim, width and depth must be >= 1, got dim={dim}, width={width}, depth={depth}")
        self.dim = dim
        self.embed = nn.Sequential(FourierEmbedding(emb_dim, scale=fourier_scale, order=EDM_ORDER),
                                   nn.Linear(emb_dim, emb_dim), nn.SiLU())
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
        """x: (B, dim), c_noise: (B,) -> (B, dim)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        return self.body(torch.cat([x, self.embed(c_noise.to(x.dtype))], dim=1))
