"""Total time derivatives along the PF ODE, done once: forward-mode ``torch.func.jvp`` and a finite-difference twin.

Continuous-time consistency objectives need df/dt, the derivative of a function of (x_t, t) along a trajectory
x_t of the PF ODE (paper App. B, Theorems 5 and 6; sCM, Lu & Song 2025, Sec. 4; MeanFlow, Geng et al. 2025, Eq. 8):

    df/dt (x_t, t) = (d f / d x)(x_t, t) dx_t/dt + (d f / d t)(x_t, t),

a Jacobian-vector product with tangents (dx_t/dt, 1). ``total_derivative`` computes f and df/dt in one forward
pass with forward-mode AD (``torch.func.jvp``); ``total_derivative_fd`` is its check, the central difference
(f(x + h v, t + h) - f(x - h v, t - h)) / 2h, exact to O(h^2). Every evaluation of f inside one call sees the same
random state, so a network with dropout uses one dropout mask for f and its derivative (as the discrete losses use
one mask for the online and the target pass, ``cmlearn.core.losses._paired``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from cmlearn.core.parameterization import as_time

TimeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def total_derivative(fn: TimeFn, x: torch.Tensor, t: float | torch.Tensor,
                     dx_dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, df/dt) = (fn(x, t), J_x fn dx_dt + d_t fn) by forward-mode AD (``torch.func.jvp``), one pass.

    ``x``, ``dx_dt``: (B, ...); ``t``: scalar or (B,) (passed to ``fn`` as (B,)). Gradients of the parameters of
    ``fn`` flow through f (and through df/dt, unless called under ``torch.no_grad``, as a stop-gradient target is).
    """
    if dx_dt.shape != x.shape:
        raise ValueError(f"dx_dt must have x's shape {tuple(x.shape)}, got {tuple(dx_dt.shape)}")
    t = as_time(t, x)
    with warnings.catch_warnings():  # torch's forward-mode decompositions still call torch.jit.script
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        return torch.func.jvp(fn, (x, t), (dx_dt, torch.ones_like(t)))


def total_derivative_fd(fn: TimeFn, x: torch.Tensor, t: float | torch.Tensor, dx_dt: torch.Tensor, *,
                        h: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """The finite-difference twin of ``total_derivative``: (fn(x, t), central difference along (dx_dt, 1)).

    The three evaluations start from the same random state (the same dropout mask); afterwards the random state
    is where one evaluation leaves it, as after ``total_derivative``. Use float64: the error is O(h^2) + O(1e-16 / h).
    """
    if dx_dt.shape != x.shape:
        raise ValueError(f"dx_dt must have x's shape {tuple(x.shape)}, got {tuple(dx_dt.shape)}")
    if not h > 0:
        raise ValueError(f"h must be > 0, got h={h}")
    t = as_time(t, x)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        state = _rng_state(x.device)
        plus = fn(x + h * dx_dt, t + h)
        _set_rng_state(state, x.device)
        minus = fn(x - h * dx_dt, t - h)
        _set_rng_state(state, x.device)
    f = fn(x, t)
    return f, (plus - minus) / (2 * h)


def _rng_state(device: torch.device):
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(state, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
