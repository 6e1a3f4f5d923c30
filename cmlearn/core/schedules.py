"""Time grids and curricula: the Karras grid (Sec. 5 / App. C), CT's N(k), mu(k) (Alg. 3, App. C) and iCT's.

Every grid here is ascending, t_1 = eps < ... < t_N = T, so ``ts[n]`` is the paper's t_{n+1}.
"""

from __future__ import annotations

import math

import torch

T_MAX = 80.0
EPS = 0.002
RHO = 7.0


def check_time_range(*, eps: float, T: float) -> None:
    """Raise ValueError unless 0 < eps < T."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got eps={eps}")
    if not eps < T:
        raise ValueError(f"eps must be < T, got eps={eps} >= T={T}")


def karras_sigmas(
    n: int, *, eps: float = EPS, T: float = T_MAX, rho: float = RHO, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Karras grid t_i = (eps^(1/rho) + (i-1)/(N-1) (T^(1/rho) - eps^(1/rho)))^rho, i = 1..N (paper Sec. 5)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"N must be an integer >= 2, got N={n!r}")
    check_time_range(eps=eps, T=T)
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got rho={rho}")
    i = torch.arange(n, dtype=torch.float64)
    lo, hi = eps ** (1 / rho), T ** (1 / rho)
    ts = (lo + i / (n - 1) * (hi - lo)) ** rho
    ts[0], ts[-1] = eps, T  # exact endpoints
    return ts.to(dtype)


def ct_num_steps(k: int, *, K: int, s0: int = 2, s1: int = 150) -> int:
    """CT's N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1 (App. C): N(0) = s0, N(K) = s1 + 1."""
    if K <= 0:
        raise ValueError(f"K must be > 0, got K={K}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got k={k}")
    k = min(k, K)
    return int(math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1)) + 1


def ct_ema_decay(
    k: int, *, K: int, s0: int = 2, s1: int = 150, mu0: float = 0.9, official: bool = False
) -> float:
    """CT's target decay mu(k) = exp(s0 log(mu0) / N(k)) (App. C).

    ``official=True`` uses N(k) - 1 in the denominator, as openai/consistency_models does (mu(0) = mu0^2).
    """
    n = ct_num_steps(k, K=K, s0=s0, s1=s1)
    denom = n - 1 if official else n
    return math.exp(s0 * math.log(mu0) / denom)


def ict_num_steps(k: int, *, K: int, s0: int = 10, s1: int = 1280) -> int:
    """iCT's exponential curriculum N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1))."""
    if K <= 0:
        raise ValueError(f"K must be > 0, got K={K}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got k={k}")
    k_prime = math.floor(K / (math.log2(math.floor(s1 / s0)) + 1))
    return min(s0 * 2 ** math.floor(k / max(k_prime, 1)), s1) + 1


def lognormal_index_weights(ts: torch.Tensor, *, p_mean: float = -1.1, p_std: float = 2.0) -> torch.Tensor:
    """iCT's p(n) ∝ erf((log t_{n+1} - P_mean)/(√2 P_std)) - erf((log t_n - P_mean)/(√2 P_std)), n = 1..N-1."""
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(f"ts must be a 1-D grid with at least 2 points, got shape {tuple(ts.shape)}")
    z = torch.erf((torch.log(ts.double()) - p_mean) / (math.sqrt(2.0) * p_std))
    w = z[1:] - z[:-1]
    return w / w.sum()
