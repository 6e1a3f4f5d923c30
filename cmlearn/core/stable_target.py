"""The batch's posterior mean of the data: a low-variance stand-in for the one data point a noisy sample came from.

Source: Y. Xu, S. Tong, T. Jaakkola, R. Chen, Y. Tian, Y. Wang, Y. Liu, "Stable Target Field for Reduced Variance
Score Estimation in Diffusion Models" (ICLR 2023, arXiv 2302.00670), Eq. 7: the denoising target x_i of a sample
y_i = a_i x_i + b_i e_i is replaced by the self-normalized importance-sampling estimate of E[x | y_i] over a
reference batch that holds x_i,

    xbar_i = sum_j w_ij x_j,   w_ij = softmax_j(-||y_i - a_i x_j||^2 / (2 b_i^2)).

Where b / a is small the own point's weight is 1 and xbar_i = x_i (nothing changes); where it is large the weights
spread over the batch and xbar_i is close to the exact posterior mean, whose variance given y is 0. The estimate is
consistent in the batch size (biased for a finite batch, as any self-normalized estimate). Used by the EDM
denoising loss (``cmlearn.core.losses.EDMLoss``, STF's own use), MeanFlow (``cmlearn.core.meanflow``), CT / iCT
(``cmlearn.core.losses``), ECT (``cmlearn.core.ect``) and sCT (``cmlearn.core.scm``) when a config sets
``stable_target=true``; "the batch" is then the points of one forward pass on one process (grad_accum, micro_batch
and more GPUs make it smaller; a config that leaves fewer than 2 is refused); for EDM / CT / iCT / ECT
``stable_ref=M`` adds M more data points drawn each step (STF's reference batch, which the paper makes larger than
the training batch). Measured (README): on the 2D toys, where 512 points cover the data, it takes MeanFlow's
1-step distance from 2.3x to 1.2x the exact Heun bar; on the 8x8 digits (64 dimensions, batch 64) it made MeanFlow
worse (1-step FD-digits 217 against 71.9): the weights snap onto the few batch images near z_t.
"""

from __future__ import annotations

import torch

from cmlearn.core.parameterization import append_dims

_CHUNK = 1 << 18  # weights computed per block of rows (about 1 MB in float32)
_FLOOR = 75.0  # the smallest relative weight kept, e^-75


def batch_posterior_mean(x0: torch.Tensor, noise: torch.Tensor, snr: torch.Tensor, *,
                         reference: torch.Tensor | None = None) -> torch.Tensor:
    """xbar_i for y_i = a_i x0_i + b_i noise_i, snr_i = a_i / b_i >= 0. x0, noise: (B, ...); snr: (B,) -> (B, ...).

    ``reference`` (M, ...): more data points in the reference batch beside the B of x0 (STF's reference batch, larger
    than the training batch: a less biased estimate where the weights spread; 0 to M extra points per row).
    Without a reference the logits are computed from x_i - x_j (-snr e_i.(x_i - x_j) - snr^2 ||x_i - x_j||^2 / 2,
    the j-free term dropped), so the own point's logit is exactly 0 however large snr is; with one, by one matmul
    (cheaper for a large M; where snr is large enough for its rounding to show, the own point's weight is 1 either
    way), its (B, B + M) weights a block of about 2^18 at a time (memory O(B^2) without a reference, O(B + M) and
    the block with one). Raises ValueError on mismatched shapes or a negative or non-finite snr."""
    b = x0.shape[0]
    if noise.shape != x0.shape or snr.shape != (b,):
        raise ValueError(f"need noise shaped like x0 {tuple(x0.shape)} and snr of shape ({b},), got "
                         f"{tuple(noise.shape)} and {tuple(snr.shape)}")
    if reference is not None and reference.shape[1:] != x0.shape[1:]:
        raise ValueError(f"reference points must be shaped like x0's, (M, {', '.join(map(str, x0.shape[1:]))}), "
                         f"got {tuple(reference.shape)}")
    if not (torch.isfinite(snr).all() and (snr >= 0).all()):
        raise ValueError(f"snr must be finite and >= 0, got min {float(snr.min())}, max {float(snr.max())}")
    ef, xf, s = noise.reshape(b, -1), x0.reshape(b, -1), snr.to(x0).reshape(b, 1)
    if reference is not None:  # one matmul: the logits up to a j-free term, (s^2 x_i + s e_i).x_j - s^2 |x_j|^2 / 2,
        xs = torch.cat([xf, reference.to(xf).reshape(len(reference), xf.shape[1])])  # as [.., -s^2/2] @ [x_j, |x_j|^2]
        lhs = torch.cat([s.pow(2) * xf + s * ef, -s.pow(2) / 2], dim=1)  # (B, D + 1)
        rhs = torch.cat([xs, (xs * xs).sum(1, keepdim=True)], dim=1).T
        rows = max(1, _CHUNK // len(xs))  # rows of the (B, B + M) weights at a time: they stay in the CPU's cache
        return torch.cat([_softmax(lhs[i:i + rows] @ rhs) @ xs for i in range(0, b, rows)]).reshape(x0.shape)
    dx2 = torch.cdist(xf, xf, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    ex = (ef * xf).sum(1, keepdim=True) - ef @ xf.T  # e_i . (x_i - x_j)
    ex.fill_diagonal_(0)  # exactly 0 for j = i (the two sums round differently)
    w = _softmax(-s * ex - s.pow(2) * dx2 / 2)
    return (w @ xf).reshape(x0.shape)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 with every logit raised to at least the row's max - 75: a weight below e^-75 ~ 3e-33 of
    the largest changes nothing, and without the floor most of a row underflows at large snr into subnormal floats,
    which make exp and the weighted sum several times slower on a CPU (``python benchmarks/stable_target_speed.py``,
    B = 512, M = 4096, 1 thread: 17.9 ms -> 3.7 ms a call with the row blocks above, 4.8x)."""
    return torch.softmax(torch.maximum(logits, logits.amax(dim=1, keepdim=True) - _FLOOR), dim=1)


def stable_ve_point(x0: torch.Tensor, z: torch.Tensor, t_from: torch.Tensor, t_to: torch.Tensor, *,
                    reference: torch.Tensor | None = None) -> torch.Tensor:
    """The target point of CT / ECT with the stable target: one Euler step of the VE PF ODE dx/dt = (x - xbar) / t
    from x0 + t_from z to t_to, xbar the batch's posterior mean of x at x0 + t_from z (snr = 1 / t_from); equal to
    x0 + t_to z - (1 - t_to / t_from) (x0 - xbar), which is CT's x0 + t_to z where xbar = x0. x0, z: (B, ...);
    t_from, t_to: (B,), t_from > 0 -> (B, ...)."""
    xbar = batch_posterior_mean(x0, z, 1 / t_from, reference=reference)
    return x0 + append_dims(t_to, x0.ndim) * z - append_dims(1 - t_to / t_from, x0.ndim) * (x0 - xbar)
