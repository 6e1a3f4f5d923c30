"""Layers shared by the backbones: embeddings of the noise level c_noise(t) = 0.25 log(t) (paper App. C).

One Fourier embedding serves the MLP, the UNet and NCSN++. The official code bases order its two halves
differently, so the order is a parameter (a fixed permutation of the features, which the next Linear layer
absorbs, but a trained checkpoint only works with the order it was trained with). Scale: w ~ N(0, scale^2),
default 16 as in both; frequencies fixed at construction (a buffer, never trained):

* ``SCORE_SDE_ORDER = ("sin", "cos")``, the default: score_sde's ``GaussianFourierProjection``, used by NCSN++
  in score_sde and consistency_models_cifar10 (the paper's CIFAR-10 backbone), hence by ``cmlearn.nets.ncsnpp``;
* ``EDM_ORDER = ("cos", "sin")``: EDM's ``FourierEmbedding`` (Karras et al. 2022, training/networks.py), used by
  ``cmlearn.nets.mlp`` and ``cmlearn.nets.unet``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FOURIER_SCALE = 16.0  # score_sde's fourier_scale and EDM's FourierEmbedding scale
SCORE_SDE_ORDER = ("sin", "cos")  # score_sde's GaussianFourierProjection (NCSN++)
EDM_ORDER = ("cos", "sin")  # EDM's FourierEmbedding (MLP, UNet)
ORDERS = (SCORE_SDE_ORDER, EDM_ORDER)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar: (B,) -> (B, dim), halves in ``order`` of sin/cos of 2 pi w c.

    ``freqs`` w (a buffer of dim / 2 entries, saved with the weights) are drawn once, w ~ N(0, scale^2), from a
    torch.Generator seeded with ``seed``: nets built with the same arguments embed identically.
    ``dim`` counts output features (EDM's num_channels); score_sde's embedding_size is dim / 2.
    """

    def __init__(self, dim: int, *, scale: float = FOURIER_SCALE, seed: int = 0,
                 order: tuple[str, str] = SCORE_SDE_ORDER):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"embedding dim must be even and >= 2, got {dim}")
        order = tuple(order)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order}")
        self.order = order
        w = torch.randn(dim // 2, generator=torch.Generator().manual_seed(seed)) * scale
        self.register_buffer("freqs", w)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """c: (B,) -> (B, dim) = [sin(2 pi c w), cos(2 pi c w)] (or cos first), in the dtype of ``freqs``."""
        arg = (2 * math.pi) * c.to(self.freqs.dtype)[:, None] * self.freqs[None]
        sin, cos = arg.sin(), arg.cos()
        return torch.cat([sin, cos] if self.order[0] == "sin" else [cos, sin], dim=1)

    def jvp(self, c: torch.Tensor, dc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward(c), its tangent along dc (B,)): d sin = cos d(arg), d cos = -sin d(arg); the tangent is
        computed without autograd (a stop-gradient tangent, as ``cmlearn.nets.mlp.MLP.jvp`` documents)."""
        arg = (2 * math.pi) * c.to(self.freqs.dtype)[:, None] * self.freqs[None]
        sin, cos = arg.sin(), arg.cos()  # forward's own ops: the same values, computed once for both outputs
        with torch.no_grad():
            darg = (2 * math.pi) * dc.to(self.freqs.dtype)[:, None] * self.freqs[None]
            dsin, dcos = cos * darg, -sin * darg
            tangent = torch.cat([dsin, dcos] if self.order[0] == "sin" else [dcos, dsin], dim=1)
        return torch.cat([sin, cos] if self.order[0] == "sin" else [cos, sin], dim=1), tangent

    def extra_repr(self) -> str:
        return f"dim={2 * self.freqs.numel()}, order={self.order}"


class PositionalEmbedding(nn.Module):
    """Sinusoidal (transformer / DDPM) embedding of a scalar: (B,) -> (B, dim) = [cos(c w_i), sin(c w_i)].

    Deterministic frequencies w_i = (1 / max_positions)^(i / (dim / 2)), i < dim / 2 (EDM's
    PositionalEmbedding with endpoint=False); the UNet's alternative to FourierEmbedding.
    """

    def __init__(self, dim: int, *, max_positions: int = 10000):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"embedding dim must be even and >= 2, got {dim}")
        freqs = (1.0 / max_positions) ** (torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
        self.register_buffer("freqs", freqs)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """c: (B,) -> (B, dim)."""
        arg = c[:, None].to(self.freqs.dtype) * self.freqs[None]
        return torch.cat([arg.cos(), arg.sin()], dim=1)
