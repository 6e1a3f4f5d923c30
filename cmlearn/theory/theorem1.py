"""Theorem 1, checked: a zero-loss CD model is the teacher's solver composed down the grid (Sec. 4, App. A.2).

If L_CD = 0 then f(x, t_{n+1}) = f(x_hat_{t_n}, t_n) for every x, with f(., t_1) = identity (the boundary
condition), so f_zero(x, t_n) = Phi_{2->1} o ... o Phi_{n->n-1}(x): the solver (Euler or Heun, exact score)
stepped from t_n down to t_1 = eps. Its error against the exact consistency function is the solver's global
error, O(dt^p) with p = 1 (Euler) or 2 (Heun), dt = max_n (t_{n+1} - t_n). This module measures that error on
nested Karras grids, fits the orders, and measures the local Lipschitz constant of the exact consistency
function, which governs where the sup error sits.

Grids are ascending (ts[0] = eps, ts[-1] = T); an index i means the time ts[i] (the paper's t_{i+1}).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from cmlearn.core.distributions import Distribution
from cmlearn.core.pfode import STEPPERS, Field, reference_solve
from cmlearn.core.schedules import EPS, RHO, T_MAX, karras_sigmas
from cmlearn.theory.orders import fit_order


def _stepper(solver: str):
    if solver not in STEPPERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(STEPPERS)}")
    return STEPPERS[solver]


def zero_loss_model(x: torch.Tensor, i: int | torch.Tensor, ts: torch.Tensor, *, score: Field | None = None,
                    denoiser: Field | None = None, solver: str = "heun") -> torch.Tensor:
    """f_zero(x, ts[i]) (B, ...): the solver stepped ts[i] -> ... -> ts[0] = eps (Theorem 1's zero-loss CM).

    ``i`` is one index or a (B,) tensor of indices (one per row, all rows advanced together).
    """
    step = _stepper(solver)
    ts = torch.as_tensor(ts, dtype=x.dtype, device=x.device)
    i = torch.as_tensor(i, dtype=torch.long, device=x.device)
    i = i.expand(x.shape[0]).clone() if i.ndim == 0 else i.clone()
    if i.shape != (x.shape[0],):
        raise ValueError(f"i must be an int or have shape ({x.shape[0]},), got {tuple(i.shape)}")
    if len(i) and (int(i.min()) < 0 or int(i.max()) >= len(ts)):
        raise ValueError(f"indices must lie in [0, {len(ts) - 1}], got [{int(i.min())}, {int(i.max())}]")
    for _ in range(int(i.max()) if len(i) else 0):
        active = i > 0
        nxt = (i - 1).clamp_min(0)
        moved = step(x, ts[i], ts[nxt], score=score, denoiser=denoiser)
        x = torch.where(active.reshape((-1,) + (1,) * (x.ndim - 1)), moved, x)
        i = nxt
    return x


def max_step(ts: torch.Tensor) -> float:
    """Theorem 1's dt = max_n |t_{n+1} - t_n| of a grid."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    return float((ts[1:] - ts[:-1]).abs().max())


def nested_sizes(k_min: int, k_max: int) -> list[int]:
    """Grid sizes N = 2^k + 1 for k_min..k_max: nested Karras grids for Theorem 1's order fits."""
    if not 1 <= k_min <= k_max:
        raise ValueError(f"need 1 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    return [2**k + 1 for k in range(k_min, k_max + 1)]


def grid_positions(coarse: torch.Tensor, fine: torch.Tensor, *, rtol: float = 1e-9) -> torch.Tensor:
    """Index (n_coarse,) of each coarse time in the fine grid (Theorem 1's nested grids); ValueError if absent."""
    pos = torch.searchsorted(fine, coarse).clamp_max(len(fine) - 1)
    lo = (pos - 1).clamp_min(0)
    pos = torch.where((fine[lo] - coarse).abs() < (fine[pos] - coarse).abs(), lo, pos)
    bad = (fine[pos] - coarse).abs() > rtol * coarse.abs()
    if bad.any():
        t = float(coarse[bad][0])
        raise ValueError(f"time {t:.6g} of the evaluation grid is not on the solver grid of size {len(fine)}")
    return pos


def exact_trajectory_points(dist: Distribution, ts: torch.Tensor, m: int, *, generator: torch.Generator | None = None,
                            rtol: float = 1e-9, atol: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """x_eps ~ p_eps and the exact PF ODE path (Eq. 3) through it at every time of ``ts`` (Theorem 1's f).

    Returns (x_eps (m, d), traj (len(ts), m, d)); by construction the exact consistency function is
    f(traj[i], ts[i]) = x_eps, up to the dopri5 tolerance. traj[i] is distributed as p_{ts[i]}.
    """
    ts = torch.as_tensor(ts, dtype=torch.float64)
    x0 = dist.sample(m, generator=generator)
    x_eps = x0 + float(ts[0]) * torch.randn(x0.shape, dtype=x0.dtype, generator=generator)
    traj = reference_solve(x_eps, float(ts[0]), float(ts[-1]), score=dist.score, rtol=rtol, atol=atol,
                           t_eval=ts.tolist())
    return x_eps, traj


@dataclass
class ErrorCurve:
    """Errors of the zero-loss model of one solver on grids of several sizes, at shared evaluation points."""

    solver: str
    Ns: list[int]
    dt: list[float]
    mean: list[float]
    sup: list[float]
    errors: list[torch.Tensor] = field(repr=False)  # per N: (n_eval_times, m) per-point errors

    def order(self, kind: str = "mean", *, min_N: int = 0) -> float:
        """Fitted order p in mean or sup error ~ C dt^p (Theorem 1: 1 Euler, 2 Heun) over the grids with N >= min_N."""
        if kind not in ("mean", "sup"):
            raise ValueError(f"kind must be 'mean' or 'sup', got {kind!r}")
        keep = [j for j, N in enumerate(self.Ns) if N >= min_N]
        return fit_order([1 / self.dt[j] for j in keep], [getattr(self, kind)[j] for j in keep])


def zero_loss_errors(dist: Distribution, Ns: Sequence[int], *, solvers: Sequence[str] = ("euler", "heun"),
                     m: int = 1000, eval_N: int | None = None, eps: float = EPS, T: float = T_MAX, rho: float = RHO,
                     generator: torch.Generator | None = None,
                     points: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, ErrorCurve]:
    """Theorem 1: ||f_zero(x, t) - f(x, t)|| per solver and grid size, at exact PF ODE points x ~ p_t.

    The evaluation times are the grid of size ``eval_N`` (default min(Ns)) without eps (where both sides are
    x); every grid must contain them (use nested sizes 2^k + 1). ``points`` = (x_eps, traj) reuses exact
    points from ``exact_trajectory_points`` on that evaluation grid.
    """
    Ns = sorted(int(N) for N in Ns)
    eval_N = eval_N or Ns[0]
    ev = karras_sigmas(eval_N, eps=eps, T=T, rho=rho)
    x_eps, traj = points if points is not None else exact_trajectory_points(dist, ev, m, generator=generator)
    if traj.shape[0] != eval_N:
        raise ValueError(f"points hold {traj.shape[0]} times, expected the {eval_N} of the evaluation grid")
    X = traj[1:].reshape(-1, traj.shape[-1])
    n_ev, m = eval_N - 1, traj.shape[1]
    target = x_eps.repeat(n_ev, 1)
    curves = {}
    for solver in solvers:
        curve = ErrorCurve(solver, Ns, [], [], [], [])
        for N in Ns:
            ts = karras_sigmas(N, eps=eps, T=T, rho=rho)
            idx = grid_positions(ev[1:], ts).repeat_interleave(m)
            f = zero_loss_model(X, idx, ts, score=dist.score, solver=solver)
            err = (f - target).norm(dim=1).reshape(n_ev, m)
            curve.dt.append(max_step(ts))
            curve.mean.append(float(err.mean()))
            curve.sup.append(float(err.max()))
            curve.errors.append(err)
        curves[solver] = curve
    return curves


@torch.no_grad()
def model_errors(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ts: torch.Tensor,
                 x_eps: torch.Tensor, traj: torch.Tensor) -> torch.Tensor:
    """||model(traj[i], ts[i]) - x_eps|| for i >= 1: a trained CM against Theorem 1's exact f; (len(ts) - 1, m)."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if traj.shape[0] != len(ts):
        raise ValueError(f"traj holds {traj.shape[0]} times but ts has {len(ts)}")
    p = next(model.parameters()) if isinstance(model, torch.nn.Module) else None
    out = []
    for i in range(1, len(ts)):
        x = traj[i] if p is None else traj[i].to(p)
        f = model(x, torch.full((len(x),), float(ts[i]), dtype=x.dtype, device=x.device))
        out.append((f.to(x_eps) - x_eps).norm(dim=1))
    return torch.stack(out)


def fine_consistency_function(x: torch.Tensor, t: torch.Tensor | float, *, score: Field | None = None,
                              denoiser: Field | None = None, n: int = 64, eps: float = EPS,
                              rho: float = RHO) -> torch.Tensor:
    """Theorem 1's exact f(x, t) (B, d), by Heun on a fine per-row Karras grid down to eps (differentiable)."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    t = t.expand(x.shape[0]) if t.ndim == 0 else t
    if (t < eps).any():
        raise ValueError(f"times must be >= eps = {eps}, got min {float(t.min())}")
    s = torch.linspace(1.0, 0.0, n, dtype=x.dtype, device=x.device)
    lo = eps ** (1 / rho)
    grid = (lo + s[None] * (t[:, None] ** (1 / rho) - lo)) ** rho  # (B, n), from t down to eps
    grid[:, -1] = eps
    for k in range(n - 1):
        x = STEPPERS["heun"](x, grid[:, k], grid[:, k + 1], score=score, denoiser=denoiser)
    return x


def local_lipschitz(x: torch.Tensor, t: torch.Tensor | float, *, score: Field | None = None,
                    denoiser: Field | None = None, n: int = 64, eps: float = EPS,
                    chunk: int = 4096) -> torch.Tensor:
    """||d f(x, t) / dx||_2 (B,): the local Lipschitz constant of the exact f (Theorem 1's L), (B, d) input.

    Forward-mode autodiff (one Jacobian column per input dimension) through ``fine_consistency_function``.
    """
    from torch.func import jvp

    if x.ndim != 2:
        raise ValueError(f"x must have shape (B, d), got {tuple(x.shape)}")
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    t = t.expand(x.shape[0]) if t.ndim == 0 else t
    out = []
    for s in range(0, len(x), chunk):
        xb, tb = x[s : s + chunk], t[s : s + chunk]

        def f(y, tb=tb):
            return fine_consistency_function(y, tb, score=score, denoiser=denoiser, n=n, eps=eps)

        cols = []
        for j in range(x.shape[1]):
            e = torch.zeros_like(xb)
            e[:, j] = 1.0
            with warnings.catch_warnings():  # torch's forward-mode decompositions still call torch.jit.script
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
                cols.append(jvp(f, (xb,), (e,))[1])
        out.append(torch.linalg.matrix_norm(torch.stack(cols, -1), ord=2))
    return torch.cat(out)


def top_fraction(values: torch.Tensor, frac: float) -> torch.Tensor:
    """Indices (k,) of the largest ``frac`` of ``values`` (at least one): Theorem 1's worst-case errors."""
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    k = max(1, math.ceil(frac * values.numel()))
    return values.flatten().topk(k).indices


def stretch_shares(errors: torch.Tensor, lips: torch.Tensor, *, frac: float = 0.01,
                   stretch: float = 5.0) -> tuple[float, float]:
    """Theorem 1's sup error: the share of stretched points among the worst errors, and among all points.

    Stretched: L > ``stretch`` x the median L at the same time; the worst ``frac`` of errors is taken per time.

    ``errors`` and ``lips`` are (n_times, m). A first share far above the second means the sup error sits
    where the exact consistency function stretches space: near the boundaries between modes.
    """
    if errors.shape != lips.shape or errors.ndim != 2:
        raise ValueError(f"errors and lips must both be (n_times, m), got {tuple(errors.shape)} and "
                         f"{tuple(lips.shape)}")
    stretched = lips > stretch * lips.median(dim=1, keepdim=True).values
    worst = torch.cat([stretched[k][top_fraction(errors[k], frac)] for k in range(errors.shape[0])])
    return float(worst.double().mean()), float(stretched.double().mean())
