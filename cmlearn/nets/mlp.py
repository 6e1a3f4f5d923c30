"""An MLP backbone for points of any dimension, conditioned on c_noise(t) through a Fourier embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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

    def jvp(self, x: torch.Tensor, c_noise: torch.Tensor, dx: torch.Tensor,
            dc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, dF) = (forward(x, c_noise), J_x F dx + J_c F dc), forward mode written out layer by layer (Fourier
        embedding, Linear, SiLU, dropout with the forward pass's mask): what ``torch.func.jvp(self, (x, c_noise),
        (dx, dc))`` returns (tests/test_mlp_jvp.py), about 2x faster on a CPU (``benchmarks/jvp_speed.py``).

        F carries autograd as ``forward``'s output does; dF is computed under no_grad, a stop-gradient tangent
        (what MeanFlow's target and sCM's tangent use, ``cmlearn.core.meanflow``, ``cmlearn.core.scm``). dx: x's
        shape (B, dim); dc: c_noise's shape, (B,) or (B, n_times). Raises ValueError on other shapes."""
        if dx.shape != x.shape or dc.shape != c_noise.shape:
            raise ValueError(f"dx and dc must have the shapes of x {tuple(x.shape)} and c_noise "
                             f"{tuple(c_noise.shape)}, got {tuple(dx.shape)} and {tuple(dc.shape)}")
        c = c_noise.to(x.dtype).reshape(x.shape[0], -1)
        if x.ndim != 2 or x.shape[1] != self.dim or c.shape[1] != self.n_times:
            raise ValueError(f"x must have shape (B, {self.dim}) and c_noise (B,) or (B, {self.n_times}), got "
                             f"{tuple(x.shape)} and {tuple(c_noise.shape)}")
        dc = dc.to(x.dtype).reshape(c.shape)
        fourier, linear, _ = self.embed
        hs, dhs = [self.input_scale * x], [self.input_scale * dx]
        for i in range(self.n_times):
            e, de = fourier.jvp(c[:, i], dc[:, i])
            h, dh = self._layer_jvp(linear, e, de)
            h, dh = _silu_jvp(h, dh)
            hs.append(h)
            dhs.append(dh)
        h, dh = torch.cat(hs, dim=1), torch.cat(dhs, dim=1)
        for layer in self.body:
            if isinstance(layer, nn.Linear):
                h, dh = self._layer_jvp(layer, h, dh)
                continue
            drop = layer[1] if isinstance(layer, nn.Sequential) else None  # (SiLU, Dropout) or SiLU
            h, dh = _silu_jvp(h, dh)
            if drop is not None and drop.training and drop.p > 0:
                mask = F.dropout(torch.ones_like(h), drop.p, training=True)  # the draw forward's dropout makes
                h, dh = h * mask, dh * mask
        return h, dh

    @staticmethod
    def _layer_jvp(layer: nn.Linear, h: torch.Tensor, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            dout = F.linear(dh, layer.weight)
        return layer(h), dout


def _silu_jvp(h: torch.Tensor, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(silu(h), silu'(h) dh), silu'(h) = s (1 + h (1 - s)), s = sigmoid(h); the tangent without autograd."""
    with torch.no_grad():
        s = torch.sigmoid(h)
        dout = s * (1 + h * (1 - s)) * dh
    return F.silu(h), dout
