"""An MLP backbone for points of any dimension, conditioned on c_noise(t) through a Fourier embedding."""

from __future__ import annotations

import torch
from torch import nn

from cmlearn.nets.layers import EDM_ORDER, FourierEmbedding


class MLP(nn.Module):
    """F_theta(x, c_noise): input x concatenated with a time embedding, ``depth`` SiLU layers of ``width``.

    The embedding is FourierEmbedding(emb_dim, order=EDM_ORDER) then Linear + SiLU; ``fourier_scale``
    is 1, not the images' 16: for the toys c_noise = 0.25 log(t) spans only about [-1.6, 1.1].
    ``n_times`` > 1 conditions on several scalars (c_noise of shape (B, n_times), e.g. MeanFlow's (t, t - r)):
    each goes through the same embedding and the embeddings are concatenated.
    ``input_scale`` multiplies x (already c_in(t) x, about unit scale) before the first layer: on 2D mixtures whose
    modes are far narrower than sigma_data, a SiLU MLP fed unit-scale x stays at the EDM loss of F = 0 (spectral
    bias); toy-edm uses 10 (issue 19).
    """

    def __init__(self, dim: int = 2, *, width: int = 256, depth: int = 4, emb_dim: int = 64,
                 fourier_scale: float = 1.0, dropout: float = 0.0, n_times: int = 1, input_scale: float = 1.0):
        super().__init__()
        if dim < 1 or width < 1 or depth < 1 or n_times < 1:
            raise ValueError(f"dim, width, depth and n_times must be >= 1, got dim={dim}, width={width}, "
                             f"depth={depth}, n_times={n_times}")
        if not input_scale > 0:
            raise ValueError(f"input_scale must be > 0, got input_scale={input_scale}")
        self.dim, self.n_times, self.input_scale = dim, n_times, float(input_scale)
        self.embed = nn.Sequential(FourierEmbedding(emb_dim, scale=fourier_scale, order=EDM_ORDER),
                                   nn.Linear(emb_dim, emb_dim), nn.SiLU())
        layers: list[nn.Module] = []
        d_in = dim + emb_dim * n_times
        for _ in range(depth):  # dropout shares the SiLU's slot, so the weights' names do not depend on it
            act = nn.Sequential(nn.SiLU(), nn.Dropout(dropout)) if dropout > 0 else nn.SiLU()
            layers += [nn.Linear(d_in, width), act]
            d_in = width
        layers.append(nn.Linear(d_in, dim))
        self.body = nn.Sequential(*layers)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints written before dropout shared the SiLU's slot (layers at body.0, body.3, ... when dropout
        was on) load into the current layout (body.0, body.2, ...)."""
        body = prefix + "body."
        if f"{body}3.weight" in state_dict and f"{body}2.weight" not in state_dict:
            old = sorted((k for k in state_dict if k.startswith(body)), key=lambda k: int(k[len(body):].split(".")[0]))
            for key in old:  # ascending, so no key is overwritten before it moves
                index, rest = key[len(body):].split(".", 1)
                state_dict[f"{body}{2 * int(index) // 3}.{rest}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """x: (B, dim), c_noise: (B,) (or (B, n_times)) -> (B, dim)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        c = c_noise.to(x.dtype).reshape(x.shape[0], -1)
        if c.shape[1] != self.n_times:
            raise ValueError(f"c_noise must have shape (B,) or (B, {self.n_times}), got {tuple(c_noise.shape)}")
        return self.body(torch.cat([self.input_scale * x, *(self.embed(c[:, i]) for i in range(self.n_times))], dim=1))
