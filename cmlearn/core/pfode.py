"""The empirical probability-flow ODE dx/dt = -t s(x, t) = (x - D(x, t)) / t (paper Eq. 3) and its solvers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from cmlearn.core.parameterization import append_dims, as_time
from cmlearn.core.schedules import EPS

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def drift(x: torch.Tensor, t: float | torch.Tensor, *, score: Field | None = None,
          denoiser: Field | None = None) -> torch.Tensor:
    """PF ODE drift (Eq. 3) dx/dt = -t s(x, t), or (x - D(x, t)) / t from a denoiser (one of them); x's shape."""
    if (score is None) == (denoiser is None):
        raise ValueError("give exactly one of score= or denoiser=")
    t = as_time(t, x)
    tt = append_dims(t, x.ndim)
    if score is not None:
        return -tt * score(x, t)
    return (x - denoiser(x, t)) / tt


def euler_step(x: torch.Tensor, t: float | torch.Tensor, t_next: float | torch.Tensor, *,
               score: Field | None = None, denoiser: Field | None = None) -> torch.Tensor:
    """One Euler step of the PF ODE (Eq. 3) from t to t_next (local error O(dt^2), Theorem 1); x's shape (B, ...)."""
    dt = append_dims(as_time(t_next, x) - as_time(t, x), x.ndim)
    return x + dt * drift(x, t, score=score, denoiser=denoiser)


def heun_step(x: torch.Tensor, t: float | torch.Tensor, t_next: float | torch.Tensor, *,
              score: Field | None = None, denoiser: Field | None = None) -> torch.Tensor:
    """One Heun step (EDM Alg. 1): Euler predictor, trapezoid corrector (local error O(dt^3)); x's shape (B, ...)."""
    dt = append_dims(as_time(t_next, x) - as_time(t, x), x.ndim)
    d = drift(x, t, score=score, denoiser=denoiser)
    x_pred = x + dt * d
    d_next = drift(x_pred, t_next, score=score, denoiser=denoiser)
    return x + dt * 0.5 * (d + d_next)


STEPPERS = {"euler": euler_step, "heun": heun_step}


def _check_ts(ts) -> torch.Tensor:
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"ts must be a sequence of at least 2 times, got shape {tuple(ts.shape)}")
    if (ts <= 0).any():
        raise ValueError(f"ts must be positive, got min {float(ts.min())}")
    steps = ts[1:] - ts[:-1]
    if not ((steps < 0).all() or (steps > 0).all()):
        raise ValueError("ts must be strictly monotone")
    return ts


def solve(x: torch.Tensor, ts: Sequence[float] | torch.Tensor, *, score: Field | None = None,
          denoiser: Field | None = None, method: str = "heun",
          return_trajectory: bool = False) -> torch.Tensor:
    """Step the PF ODE (Eq. 3) through the times ``ts`` (first = start, last = end) with Euler or Heun.

    Returns x at ts[-1], or the whole trajectory (len(ts), *x.shape) with ``return_trajectory=True``.
    """
    if method not in STEPPERS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(STEPPERS)}")
    step = STEPPERS[method]
    ts = _check_ts(ts).tolist()
    traj = [x]
    for t, t_next in zip(ts[:-1], ts[1:]):
        x = step(x, t, t_next, score=score, denoiser=denoiser)
        if return_trajectory:
            traj.append(x)
    return torch.stack(traj) if return_trajectory else x


def reference_solve(x: torch.Tensor, t_start: float, t_end: float, *, score: Field,
                    rtol: float = 1e-7, atol: float = 1e-7, t_eval: Sequence[float] | None = None) -> torch.Tensor:
    """Adaptive dopri5 (torchdiffeq) solve of the PF ODE (Eq. 3) from t_start to t_end: the reference answer.

    With ``t_eval`` (monotone, from t_start to t_end) returns the solution at each of those times.
    """
    from torchdiffeq import odeint

    if t_start == t_end:
        raise ValueError(f"t_start and t_end must differ, got {t_start}")
    times = torch.tensor([t_start, t_end] if t_eval is None else list(t_eval), dtype=x.dtype, device=x.device)
    _check_ts(times)

    def f(t, y):
        return -t * score(y, t.expand(y.shape[0]))

    out = odeint(f, x, times, rtol=rtol, atol=atol, method="dopri5")
    return out[-1] if t_eval is None else out


def exact_consistency_function(x: torch.Tensor, t: float, *, score: Field, eps: float = EPS,
                               rtol: float = 1e-7, atol: float = 1e-7) -> torch.Tensor:
    """f(x, t) (B, d) = the PF ODE solution at eps started from (x, t) (paper Sec. 3): the target of every CM."""
    if t == eps:
        return x.clone()
    return reference_solve(x, t, eps, score=score, rtol=rtol, atol=atol)
