"""The fast ODE samplers consistency models are measured against (paper Sec. 1 and 6), for an EDM denoiser.

k-diffusion style, one function each: ``sampler(denoiser, x, sigmas) -> x``. ``x`` is the noise at sigmas[0]
(``prior_noise(n, shape, sigma=sigmas[0])``), ``sigmas`` a strictly decreasing grid ending at eps (not 0: the PF ODE
of the paper stops at eps), ``denoiser(x, t)`` an estimate of E[x_0 | x_t = x] with t a (B,) tensor. In the
paper's parameterization sigma(t) = t the PF ODE is dx/dt = (x - D(x, t)) / t (Eq. 3), and with lambda = -log t
every sampler below is an exponential integrator in the data prediction D:

- Euler = DDIM (Song et al. 2021): x' = D + (t'/t)(x - D), 1 NFE per step, order 1.
- Heun (EDM Alg. 1, ``cmlearn.core.pfode.heun_step``): 2 NFE per step, order 2.
- DPM-Solver++(2M) (Lu et al. 2022): DDIM with D replaced by D + (D - D_prev) / (2r), r = h_prev / h,
  h = log(t / t'): 1 NFE per step, order 2 (the first step is DDIM). As k-diffusion's ``sample_dpmpp_2m`` and
  diffusers' ``EDMDPMSolverMultistepScheduler`` (midpoint); second order up to the last step, because the grid
  ends at eps where h stays finite (their grids end at 0, where the last step must be first order).
- UniPC (Zhao et al. 2023), B(h) = e^-h - 1 ("bh2"), order 2: a UniP-2 predictor (= DPM-Solver++(2M)) and a UniC
  corrector that reuses the model call at the new point, so 1 NFE per step still; order 3 on smooth problems.

``nfe_sigmas(sampler, nfe)`` gives the Karras grid that spends exactly ``nfe`` network calls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cmlearn.core.parameterization import as_time
from cmlearn.core.pfode import heun_step
from cmlearn.core.schedules import EPS, RHO, T_MAX, karras_sigmas

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_sigmas(sigmas) -> list[float]:
    s = [float(v) for v in torch.as_tensor(sigmas, dtype=torch.float64).tolist()]
    if len(s) < 2:
        raise ValueError(f"sigmas must hold at least 2 times (start and end), got {s}")
    if s[-1] <= 0 or any(b >= a for a, b in zip(s, s[1:])):
        raise ValueError(f"sigmas must be strictly decreasing and positive (ending at eps, not 0), got {s}")
    return s


def _D(denoiser: Denoiser, x: torch.Tensor, t: float) -> torch.Tensor:
    return denoiser(x, as_time(t, x))


def _ddim(x: torch.Tensor, d: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """x' = (t'/t) x + (1 - t'/t) d: the exact solution of the PF ODE if D stayed equal to d over [t', t]."""
    return (t_next / t) * x + (1.0 - t_next / t) * d


@torch.no_grad()
def euler_sampler(denoiser: Denoiser, x: torch.Tensor, sigmas) -> torch.Tensor:
    """Euler on the PF ODE = DDIM in this parameterization; len(sigmas) - 1 NFE; (B, ...) -> (B, ...)."""
    s = _check_sigmas(sigmas)
    for t, t_next in zip(s[:-1], s[1:]):
        x = _ddim(x, _D(denoiser, x, t), t, t_next)
    return x


@torch.no_grad()
def heun_sampler(denoiser: Denoiser, x: torch.Tensor, sigmas) -> torch.Tensor:
    """Heun (EDM Alg. 1 without churn, a corrector on every step, also the last); 2 (len(sigmas) - 1) NFE."""
    s = _check_sigmas(sigmas)
    for t, t_next in zip(s[:-1], s[1:]):
        x = heun_step(x, t, t_next, denoiser=denoiser)
    return x


@torch.no_grad()
def dpmpp_2m_sampler(denoiser: Denoiser, x: torch.Tensor, sigmas) -> torch.Tensor:
    """DPM-Solver++(2M), data prediction, midpoint form; len(sigmas) - 1 NFE; (B, ...) -> (B, ...)."""
    s = _check_sigmas(sigmas)
    d_prev, h_prev = None, None
    for t, t_next in zip(s[:-1], s[1:]):
        d = _D(denoiser, x, t)
        h = torch.log(torch.tensor(t / t_next, dtype=torch.float64)).item()
        if d_prev is None:
            x = _ddim(x, d, t, t_next)
        else:
            r = h_prev / h
            x = _ddim(x, (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_prev, t, t_next)
        d_prev, h_prev = d, h
    return x


def _unipc_rhos(r: float | None, h: float) -> tuple[float, float, float]:
    """UniPC-bh2 coefficients for one step of size h (in lambda): (predictor rho, corrector rho_prev, rho_new).

    With B(h) = e^-h - 1, phi = (e^-h - 1)/(-h) - 1 and phi2 = phi/(-h) - 1/2, the corrector solves
    [[1, 1], [r, 1]] rho = [phi / B, 2 phi2 / B] (order 2), or uses rho_new = 1/2 without history (order 1);
    the predictor's order-2 rho is 1/2 (Zhao et al. 2023, as diffusers' UniPCMultistepScheduler).
    """
    hh = -h
    B = torch.expm1(torch.tensor(hh, dtype=torch.float64)).item()
    phi1 = B / hh - 1
    phi2 = phi1 / hh - 0.5
    if r is None:
        return 0.0, 0.0, 0.5
    b1, b2 = phi1 / B, 2 * phi2 / B
    rho_prev = (b1 - b2) / (1 - r)  # solve rho_prev + rho_new = b1, r rho_prev + rho_new = b2
    return 0.5, rho_prev, b1 - rho_prev


@torch.no_grad()
def unipc_sampler(denoiser: Denoiser, x: torch.Tensor, sigmas) -> torch.Tensor:
    """UniPC (bh2, order 2 predictor + corrector, data prediction); len(sigmas) - 1 NFE; (B, ...) -> (B, ...).

    Step i: D_i = D(x_i, t_i); if i > 0, correct x_i with D_i (UniC, no new call); predict x_{i+1} (UniP). The
    last point gets no corrector (it would need one more call). As diffusers' UniPCMultistepScheduler with
    solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=False.
    """
    s = _check_sigmas(sigmas)
    lam = [-torch.log(torch.tensor(v, dtype=torch.float64)).item() for v in s]
    hist: list[tuple[int, torch.Tensor]] = []  # (grid index, D there), the last two
    x_prev = None
    for i in range(len(s) - 1):
        d = _D(denoiser, x, s[i])
        if hist:  # UniC: redo the step that led here, with the new D at its end
            j, d0 = hist[-1]
            h = lam[i] - lam[j]
            r = (lam[hist[-2][0]] - lam[j]) / h if len(hist) > 1 else None
            _, rho_prev, rho_new = _unipc_rhos(r, h)
            B = s[i] / s[j] - 1
            corr = rho_new * (d - d0) + (rho_prev * (hist[-2][1] - d0) / r if r is not None else 0.0)
            x = _ddim(x_prev, d0, s[j], s[i]) - B * corr
        hist = (hist + [(i, d)])[-2:]
        h = lam[i + 1] - lam[i]
        r = (lam[hist[-2][0]] - lam[i]) / h if len(hist) > 1 else None
        rho_p, _, _ = _unipc_rhos(r, h)
        B = s[i + 1] / s[i] - 1
        x_prev = x
        x = _ddim(x, d, s[i], s[i + 1]) - (B * rho_p * (hist[-2][1] - d) / r if r is not None else 0.0)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": euler_sampler,
    "heun": heun_sampler,
    "dpmpp-2m": dpmpp_2m_sampler,
    "unipc": unipc_sampler,
}
CALLS_PER_STEP = {"euler": 1, "heun": 2, "dpmpp-2m": 1, "unipc": 1}


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """Number of grid steps that spends exactly ``nfe`` network calls; ValueError when none does (Heun, odd)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    per = CALLS_PER_STEP[sampler]
    if nfe % per:
        raise ValueError(f"{sampler} spends {per} network calls per step: nfe must be a multiple of {per}, got {nfe}")
    return nfe // per


def nfe_sigmas(sampler: str, nfe: int, *, eps: float = EPS, T: float = T_MAX, rho: float = RHO) -> torch.Tensor:
    """The descending Karras grid (T ... eps, float64) on which ``sampler`` makes exactly ``nfe`` calls."""
    return karras_sigmas(steps_for_nfe(sampler, nfe) + 1, eps=eps, T=T, rho=rho).flip(0)


@torch.no_grad()
def sample_ode(denoiser: Denoiser, x_T: torch.Tensor, sampler: str, nfe: int, *, eps: float = EPS,
               T: float = T_MAX, rho: float = RHO) -> torch.Tensor:
    """``sampler`` from x_T (= T z) to eps with ``nfe`` network calls on the Karras grid; (B, ...) -> (B, ...).

    x_T is moved to the denoiser's device and dtype when the denoiser is a network."""
    params = getattr(denoiser, "parameters", None)
    p = next(params(), None) if params is not None else None
    x_T = x_T.to(p) if p is not None else x_T
    return SAMPLERS[sampler](denoiser, x_T, nfe_sigmas(sampler, nfe, eps=eps, T=T, rho=rho))


class CountedCalls:
    """Wrap a field ``fn(x, t)`` (a denoiser or a score) and count its calls: the NFE a sampler spends."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.fn, self.calls = fn, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fn(x, t)
