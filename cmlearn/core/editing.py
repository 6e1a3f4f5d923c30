"""Zero-shot editing with a consistency model: Algorithm 4 and the paper's tasks built on it (Appendix D).

Algorithm 4 works in a transformed space A x where a binary mask Omega says which coordinates are generated
(Omega = 1) and which are kept from the reference y (Omega = 0):

    y <- A^-1[(A y)(1 - Omega)];  x ~ N(y, tau_1^2 I);  x <- f(x, tau_1);  x <- A^-1[(A y)(1 - Omega) + (A x) Omega]
    for each later tau:  x ~ N(x, (tau^2 - eps^2) I);  x <- f(x, tau);  same projection.

Every function here works for point clouds (batch, dim) and image tensors (batch, C, H, W) alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cmlearn.core.sampling import check_taus, sample

LUMA = (0.2989, 0.5870, 0.1140)
"""The luma weights (ITU-R 601) that define a gray value; colorization keeps the component along this vector."""

Transform = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["LUMA", "colorization_matrix", "colorize", "denoise", "edit", "inpaint", "interpolate",
           "orthogonal_with_first_column", "patch_mean_matrix", "patch_transform", "channel_transform", "slerp",
           "stroke_guided", "super_resolve"]


# ---------------------------------------------------------------- orthogonal transforms


def orthogonal_with_first_column(v: Sequence[float] | torch.Tensor, *,
                                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A square orthogonal Q (Q^T Q = I) whose first column is v / ||v||, by QR (paper App. D, colorization)."""
    v = torch.as_tensor(v, dtype=dtype).flatten()
    if v.numel() < 1 or not torch.isfinite(v).all() or float(v.norm()) == 0.0:
        raise ValueError(f"v must be a finite non-zero vector, got {v.tolist()}")
    n = v.numel()
    M = torch.eye(n, dtype=dtype)
    k = int(v.abs().argmax())  # replace the identity column most aligned with v, so M stays invertible
    cols = [v] + [M[:, j] for j in range(n) if j != k]
    Q, R = torch.linalg.qr(torch.stack(cols, dim=1))
    Q = Q * torch.sign(torch.diagonal(R)).where(torch.diagonal(R) != 0, torch.ones(n, dtype=dtype))
    return Q


def colorization_matrix(*, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """3 x 3 orthogonal Q with first column proportional to the luma vector (0.2989, 0.5870, 0.1140) (App. D)."""
    return orthogonal_with_first_column(LUMA, dtype=dtype)


def patch_mean_matrix(factor: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(factor^2) x (factor^2) orthogonal Q whose first column is the patch mean direction 1/factor (App. D)."""
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    return orthogonal_with_first_column(torch.ones(factor * factor, dtype=dtype), dtype=dtype)


def channel_transform(Q: torch.Tensor) -> tuple[Transform, Transform]:
    """(A, A^-1) applying Q^T to the channel vector of every pixel of (B, C, H, W) images (C = Q's size)."""

    def A(x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ji,bj...->bi...", Q.to(x), x)

    def A_inv(c: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bj...->bi...", Q.to(c), c)

    return A, A_inv


def patch_transform(Q: torch.Tensor, factor: int) -> tuple[Transform, Transform]:
    """(A, A^-1) applying Q^T to every non-overlapping factor x factor patch of every channel of (B, C, H, W).

    The transformed tensor keeps the image layout: inside each patch, position k (row-major) holds coordinate k.
    """

    def to_patches(x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if H % factor or W % factor:
            raise ValueError(f"image size {H}x{W} is not divisible by factor {factor}")
        x = x.reshape(B, C, H // factor, factor, W // factor, factor).permute(0, 1, 2, 4, 3, 5)
        return x.reshape(B, C, H // factor, W // factor, factor * factor)

    def from_patches(p: torch.Tensor) -> torch.Tensor:
        B, C, h, w, _ = p.shape
        p = p.reshape(B, C, h, w, factor, factor).permute(0, 1, 2, 4, 3, 5)
        return p.reshape(B, C, h * factor, w * factor)

    def A(x: torch.Tensor) -> torch.Tensor:
        return from_patches(to_patches(x) @ Q.to(x))

    def A_inv(c: torch.Tensor) -> torch.Tensor:
        return from_patches(to_patches(c) @ Q.to(c).T)

    return A, A_inv


# ---------------------------------------------------------------- Algorithm 4


def _as_transforms(A, A_inv, y: torch.Tensor) -> tuple[Transform, Transform]:
    if A is None:
        if A_inv is not None:
            raise ValueError("A_inv given without A")
        return (lambda x: x), (lambda x: x)
    if isinstance(A, torch.Tensor):
        D = math.prod(y.shape[1:])
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] != D:
            raise ValueError(f"A must be a square matrix of size {D} (one flattened sample of y with shape "
                             f"{tuple(y.shape)}), got shape {tuple(A.shape)}")
        if A_inv is None:
            eye = torch.eye(D, dtype=A.dtype, device=A.device)
            A_inv = A.T if torch.allclose(A.T @ A, eye, atol=1e-5) else torch.linalg.inv(A)
        elif not isinstance(A_inv, torch.Tensor) or A_inv.shape != A.shape:
            raise ValueError(f"A_inv must be a matrix of the same shape as A {tuple(A.shape)}, got {A_inv!r}")
        M, M_inv = A, A_inv

        def fwd(x: torch.Tensor) -> torch.Tensor:
            return (x.flatten(1) @ M.to(x).T).reshape(x.shape)

        def inv(c: torch.Tensor) -> torch.Tensor:
            return (c.flatten(1) @ M_inv.to(c).T).reshape(c.shape)

        return fwd, inv
    if callable(A):
        if not callable(A_inv):
            raise ValueError(f"A is a callable, so A_inv must be its inverse callable, got {A_inv!r}")
        return A, A_inv
    raise ValueError(f"A must be None, a square matrix or a callable, got {type(A).__name__}")


@torch.no_grad()
def edit(model: nn.Module, y: torch.Tensor, omega: torch.Tensor | float, taus: Sequence[float] | torch.Tensor, *,
         A: torch.Tensor | Transform | None = None, A_inv: torch.Tensor | Transform | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Algorithm 4 (zero-shot editing, paper App. D): generate the Omega = 1 part of A y, keep the rest of y exactly.

    ``y``: reference (batch, ...) in data space. ``omega``: binary mask in the A-transformed space (1 = generate,
    0 = keep), broadcastable to A(y). ``A``: None (identity), a square (ideally orthogonal) matrix acting on each
    flattened sample, or a callable with ``A_inv`` its inverse. ``taus``: strictly decreasing times of the f calls.
    """
    taus = check_taus(taus, eps=model.eps, T=model.T)
    if not isinstance(y, torch.Tensor) or y.ndim < 2:
        raise ValueError(f"y must be a tensor of shape (batch, ...), got {getattr(y, 'shape', y)!r}")
    fwd, inv = _as_transforms(A, A_inv, y)
    p = next(model.parameters())
    y = y.to(p)
    Ay = fwd(y)
    omega = torch.as_tensor(omega).to(Ay)
    try:
        torch.broadcast_shapes(omega.shape, Ay.shape)
    except RuntimeError:
        raise ValueError(f"omega with shape {tuple(omega.shape)} does not broadcast to A(y) with shape "
                         f"{tuple(Ay.shape)}") from None
    if torch.broadcast_shapes(omega.shape, Ay.shape) != Ay.shape:
        raise ValueError(f"omega with shape {tuple(omega.shape)} would enlarge A(y) with shape {tuple(Ay.shape)}")
    if not bool(((omega == 0) | (omega == 1)).all()):
        raise ValueError(f"omega must be binary (0 = keep, 1 = generate), got values {omega.unique().tolist()}")
    keep = Ay * (1 - omega)

    def project(x: torch.Tensor) -> torch.Tensor:
        return inv(keep + fwd(x) * omega)

    y = inv(keep)
    x_T = y + taus[0] * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
    return sample(model, x_T, taus, generator=generator, project=project)


# ---------------------------------------------------------------- the paper's tasks


def inpaint(model: nn.Module, y: torch.Tensor, mask: torch.Tensor | float, taus: Sequence[float] | torch.Tensor, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Inpainting = Algorithm 4 with A = I (App. D). ``mask``: 1 = missing (generated), 0 = kept from y."""
    return edit(model, y, mask, taus, generator=generator)


def colorize(model: nn.Module, y_gray: torch.Tensor, taus: Sequence[float] | torch.Tensor, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Colorization = Algorithm 4 with A = Q^T per pixel, Q from the luma vector by QR; only luma is kept (App. D).

    ``y_gray``: (B, 1, H, W) gray images (repeated over 3 channels) or (B, 3, H, W) images whose luma is kept.
    """
    if not isinstance(y_gray, torch.Tensor) or y_gray.ndim != 4 or y_gray.shape[1] not in (1, 3):
        raise ValueError(f"y_gray must have shape (B, 1 or 3, H, W), got {getattr(y_gray, 'shape', y_gray)!r}")
    y = y_gray.expand(-1, 3, -1, -1) if y_gray.shape[1] == 1 else y_gray
    A, A_inv = channel_transform(colorization_matrix())
    omega = torch.tensor([0.0, 1.0, 1.0]).view(1, 3, 1, 1)
    return edit(model, y, omega, taus, A=A, A_inv=A_inv, generator=generator)


def super_resolve(model: nn.Module, y_low: torch.Tensor, factor: int, taus: Sequence[float] | torch.Tensor, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Super-resolution = Algorithm 4, A = Q^T per patch, Q's first column the patch mean; means kept (App. D).

    ``y_low``: (B, C, h, w); returns (B, C, h * factor, w * factor) whose factor x factor patch means equal y_low.
    """
    if not isinstance(y_low, torch.Tensor) or y_low.ndim != 4:
        raise ValueError(f"y_low must have shape (B, C, h, w), got {getattr(y_low, 'shape', y_low)!r}")
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    y = y_low.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    A, A_inv = patch_transform(patch_mean_matrix(factor), factor)
    omega = torch.ones(factor, factor)
    omega[0, 0] = 0.0  # position 0 of each patch holds the mean coordinate
    omega = omega.repeat(y_low.shape[2], y_low.shape[3])
    return edit(model, y, omega, taus, A=A, A_inv=A_inv, generator=generator)


@torch.no_grad()
def stroke_guided(model: nn.Module, strokes: torch.Tensor, taus: Sequence[float] | torch.Tensor, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Stroke-guided generation (SDEdit-style, App. D): x ~ N(strokes, tau_1^2 I), then Algorithm 1, nothing kept."""
    taus = check_taus(taus, eps=model.eps, T=model.T)
    if not isinstance(strokes, torch.Tensor) or strokes.ndim < 2:
        raise ValueError(f"strokes must be a tensor of shape (batch, ...), got {getattr(strokes, 'shape', strokes)!r}")
    y = strokes.to(next(model.parameters()))
    return sample(model, y + taus[0] * torch.randn(y.shape, generator=generator).to(y), taus, generator=generator)


@torch.no_grad()
def denoise(model: nn.Module, y_noisy: torch.Tensor, sigma: float, taus: Sequence[float] | None = None, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising (App. D): the noisy image itself is x_sigma, so x = f(y_noisy, sigma); later taus refine (Alg. 1).

    ``taus``: None (one call at sigma) or a decreasing schedule; sigma is put in front if it does not start with it.
    """
    if not isinstance(y_noisy, torch.Tensor) or y_noisy.ndim < 2:
        raise ValueError(f"y_noisy must be a tensor of shape (batch, ...), got {getattr(y_noisy, 'shape', y_noisy)!r}")
    sigma = float(sigma)
    taus = [sigma] if taus is None else [float(t) for t in taus]
    if taus and abs(taus[0] - sigma) > 1e-12 * max(1.0, sigma):
        taus = [sigma, *taus]
    if not model.eps < sigma <= model.T:
        raise ValueError(f"sigma must lie in (eps, T] = ({model.eps}, {model.T}] of the model, got {sigma}")
    return sample(model, y_noisy, taus, generator=generator)


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation of latents per sample (App. D): sin((1-a)th)/sin(th) z0 + sin(a th)/sin(th) z1."""
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    rows = z0.shape[0] if z0.ndim > 1 else 1
    a, b = z0.reshape(rows, -1), z1.reshape(rows, -1)
    cos = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)[:, None]
    s = torch.sin(theta)
    small = s.abs() < 1e-6
    w0 = torch.where(small, torch.full_like(s, 1 - alpha), torch.sin((1 - alpha) * theta) / s.where(~small, 1.0))
    w1 = torch.where(small, torch.full_like(s, alpha), torch.sin(alpha * theta) / s.where(~small, 1.0))
    return (w0 * a + w1 * b).reshape(z0.shape)


@torch.no_grad()
def interpolate(model: nn.Module, z0: torch.Tensor, z1: torch.Tensor,
                alphas: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Interpolation (App. D): slerp the standard-normal latents z0, z1, then one call f(T z, T) per alpha, T = model.T.

    ``z0``, ``z1``: (B, ...) standard normal noise; returns (len(alphas), B, ...).
    """
    if not isinstance(z0, torch.Tensor) or not isinstance(z1, torch.Tensor) or z0.ndim < 2:
        raise ValueError("z0 and z1 must be tensors of shape (batch, ...)")
    alphas = [float(a) for a in (alphas.tolist() if isinstance(alphas, torch.Tensor) else alphas)]
    if not alphas:
        raise ValueError("alphas is empty")
    p = next(model.parameters())
    z = torch.stack([slerp(z0, z1, a) for a in alphas]).to(p)
    out = model((model.T * z).reshape(-1, *z0.shape[1:]), model.T)
    return out.reshape(len(alphas), *z0.shape)
