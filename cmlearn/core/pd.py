"""Progressive distillation (Salimans & Ho, ICLR 2022), the distillation consistency models are compared to at 1
and 2 NFE (paper Sec. 6, Table 1), in the EDM parameterization sigma(t) = t of this course.

A PD student is a denoiser D(x, t), sampled with DDIM, which here is Euler on the PF ODE (Eq. 3):
x' = D + (t'/t)(x - D). One round halves the number of steps: the student, with ``nfe`` steps on the Karras
grid s_0 = T > s_1 > ... > s_nfe = eps, learns to do in one step what its teacher does in two on the grid of
2 nfe steps, whose even points are the student's (a Karras grid is uniform in t^(1/rho), so halving the step adds
the midpoints). Salimans & Ho's Algorithm 2, with alpha_t = 1, sigma_t = t:

    i ~ U{0, ..., nfe - 1};  t = s_i, t' = s_{i+1}, t_mid = the teacher's point between them
    x_t = x_0 + t z;   x'' = DDIM(DDIM(x_t, t -> t_mid), t_mid -> t')  with the teacher
    x~ = (x'' - (t'/t) x_t) / (1 - t'/t)   (the D that takes one student DDIM step from x_t exactly to x'')
    loss = lambda(t) ||D_student(x_t, t) - x~||^2 / dim,   lambda(t) = (t^2 + sd^2) / (t sd)^2

lambda is the EDM teacher's weight (its loss in the network's output units), which plays the role of Salimans &
Ho's "truncated SNR" weight max(SNR, 1). The student starts from its teacher's weights and becomes the next
round's teacher; rounds go pd_start -> pd_start / 2 -> ... -> 1 steps (``cmlearn.train.pd``).
"""

from __future__ import annotations

import torch
from torch import nn

from cmlearn.core.parameterization import SIGMA_DATA, append_dims
from cmlearn.core.pfode import Field
from cmlearn.core.schedules import EPS, RHO, T_MAX, karras_sigmas


def ddim_step(x: torch.Tensor, d: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """One DDIM (= Euler) step from t to t_next given the denoised d; t, t_next (B,) tensors; x's shape."""
    ratio = append_dims(t_next / t, x.ndim)
    return ratio * x + (1 - ratio) * d


def pd_target(teacher: Field, x_t: torch.Tensor, t: torch.Tensor, t_mid: torch.Tensor,
              t_next: torch.Tensor) -> torch.Tensor:
    """x~: the denoised value whose single DDIM step t -> t_next lands where two teacher DDIM steps land."""
    x_mid = ddim_step(x_t, teacher(x_t, t), t, t_mid)
    x_two = ddim_step(x_mid, teacher(x_mid, t_mid), t_mid, t_next)
    ratio = append_dims(t_next / t, x_t.ndim)
    return (x_two - ratio * x_t) / (1 - ratio)


class PDLoss:
    """One round of progressive distillation: a student of ``nfe`` DDIM steps against a teacher of 2 nfe.

    Called like the other losses, ``loss(student, target, x0, k=step, generator=g)`` -> (B,); ``target`` is
    unused (PD has no target network: ``mu = 0``). ``num_steps``/``target_decay`` answer the training loop's log.
    """

    mu = 0.0

    def __init__(self, teacher: Field, *, nfe: int, eps: float = EPS, T: float = T_MAX, rho: float = RHO,
                 sigma_data: float = SIGMA_DATA):
        if not isinstance(nfe, int) or nfe < 1:
            raise ValueError(f"nfe (the student's number of steps) must be an integer >= 1, got {nfe!r}")
        self.teacher, self.nfe, self.sigma_data = teacher, nfe, sigma_data
        self.fine = karras_sigmas(2 * nfe + 1, eps=eps, T=T, rho=rho).flip(0)  # the teacher's grid, descending
        self.student = self.fine[::2]  # the student's grid: every other point

    def num_steps(self, k: int) -> int:
        return self.nfe

    def target_decay(self, k: int) -> float:
        return 0.0

    def __call__(self, model: nn.Module, target: nn.Module | None, x0: torch.Tensor, *, k: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """lambda(t) ||D_student(x_t, t) - x~||^2 / dim per sample (B,), Salimans & Ho Alg. 2 (module doc)."""
        i = torch.randint(self.nfe, (x0.shape[0],), generator=generator)
        t, t_mid, t_next = (self.fine[j].to(device=x0.device, dtype=x0.dtype) for j in (2 * i, 2 * i + 1, 2 * i + 2))
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t = x0 + append_dims(t, x0.ndim) * z
        with torch.no_grad():
            x_tilde = pd_target(self.teacher, x_t, t, t_mid, t_next)
        weight = (t**2 + self.sigma_data**2) / (t * self.sigma_data) ** 2
        return weight * (model(x_t, t) - x_tilde).flatten(1).pow(2).mean(1)
