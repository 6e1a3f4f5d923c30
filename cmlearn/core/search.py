"""Choosing Algorithm 1's time points: the paper's greedy search, one time point at a time, each by ternary search.

The paper (Sec. 6, App. C) picks tau_1 = T, then each next time point by a ternary search over the indices of a grid
of candidate times, minimizing FID with the earlier points fixed. A ternary search shrinks the bracket [lo, hi] by
comparing two inner points; it must finish by evaluating every point of the last bracket of 3 or fewer indices. The
public implementations stop on a bracket of two points and return one of them without comparing the two, which
misses the minimum when it sits at the other one (e.g. at either end of the grid). Here both are always compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from cmlearn.core.sampling import prior_noise, sample

__all__ = ["SearchResult", "search_timesteps", "ternary_search", "sample_metric"]


def ternary_search(f: Callable[[int], float], lo: int, hi: int) -> int:
    """argmin of f over the integers lo..hi (inclusive) for unimodal f, with the last 2 or 3 points all compared.

    ``f`` should be memoized by the caller if evaluations are expensive (values are requested at most once per
    index within one call here, except for the final comparison, which reuses them only if ``f`` caches).
    """
    if hi < lo:
        raise ValueError(f"empty bracket: lo = {lo} > hi = {hi}")
    while hi - lo > 2:
        d = (hi - lo) // 3
        m1, m2 = lo + d, hi - d
        f1, f2 = f(m1), f(m2)
        if f1 < f2:
            hi = m2 - 1  # f(m2) > f(m1): the minimum is left of m2
        elif f1 > f2:
            lo = m1 + 1  # f(m1) > f(m2): the minimum is right of m1
        else:
            lo, hi = m1, m2  # equal values: for a unimodal f the minimum lies between them
    # the bracket holds 1, 2 or 3 points: compare them all (stopping at 2 points without comparing is the bug)
    return min(range(lo, hi + 1), key=f)


@dataclass
class SearchResult:
    """The chosen schedule and every evaluation.

    ``taus``: chosen times (decreasing, starting at the first time); ``value``: metric of ``taus``;
    ``evaluated``: every distinct (candidate schedule, metric) pair in evaluation order;
    ``steps``: for each greedy step k >= 2, a dict with the chosen ``time``, its ``index`` in the ascending grid, its
    ``value`` and the ``evaluated`` (time, metric) pairs of that step's ternary search.
    """

    taus: list[float]
    value: float
    evaluated: list[tuple[tuple[float, ...], float]] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)

    @property
    def n_evaluations(self) -> int:
        return len(self.evaluated)


def sample_metric(model: nn.Module, metric: Callable[[torch.Tensor], float], *, n: int, shape: Sequence[int],
                  seed: int = 0) -> Callable[[list[float]], float]:
    """Turn metric(samples) into metric(taus): Algorithm 1 samples of ``n`` x ``shape`` from the same standard
    noise (seed ``seed``) for every candidate, so the comparison between schedules is paired."""

    def score(taus: list[float]) -> float:
        gen = torch.Generator().manual_seed(seed)
        x_T = prior_noise(n, shape, sigma=taus[0], generator=gen)
        return float(metric(sample(model, x_T, taus, generator=gen)))

    return score


def search_timesteps(model: nn.Module | None, metric: Callable, *, n_steps: int, grid: Sequence[float] | torch.Tensor,
                     first: float | None = None, n: int = 10_000, seed: int = 0,
                     shape: Sequence[int] | None = None) -> SearchResult:
    """Greedy + ternary search of Algorithm 1's time points (paper Sec. 6 / App. C; lower metric is better).

    With ``model=None``, ``metric(taus) -> float`` scores a candidate schedule directly (any way of sampling). With a
    model, ``metric(samples) -> float`` scores ``n`` samples of one-sample shape ``shape`` drawn with Algorithm 1 from
    the fixed noise ``seed`` (paired comparison). ``grid``: candidate times; the first time point is ``first``
    (default max(grid) = T), and each later one is searched among the grid values below the previous one (leaving
    room for the points still to come). ``n_steps``: length of the schedule. With a model, grid times outside
    (model.eps, model.T] are dropped.
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    g = sorted({float(t) for t in (grid.tolist() if isinstance(grid, torch.Tensor) else grid)})
    if model is not None:  # Algorithm 1 needs tau > eps: a grid ending at eps (the Karras grid) loses that point
        if shape is None:
            raise ValueError("give shape= (one sample's shape) when searching with a model")
        g = [t for t in g if model.eps < t <= model.T]
    if not g or g[0] <= 0:
        raise ValueError(f"grid must hold positive times, got {g[:5]}")
    first = g[-1] if first is None else float(first)
    if len([t for t in g if t < first]) < n_steps - 1:
        raise ValueError(f"grid has {len([t for t in g if t < first])} times below first = {first}; "
                         f"n_steps = {n_steps} needs {n_steps - 1}")
    score = metric if model is None else sample_metric(model, metric, n=n, seed=seed, shape=shape)
    cache: dict[tuple[float, ...], float] = {}
    evaluated: list[tuple[tuple[float, ...], float]] = []

    def evaluate(taus: tuple[float, ...]) -> float:
        if taus not in cache:
            cache[taus] = float(score(list(taus)))
            evaluated.append((taus, cache[taus]))
        return cache[taus]

    chosen = (first,)
    value = evaluate(chosen)
    steps: list[dict] = []
    for k in range(n_steps - 1):
        left = n_steps - 2 - k  # time points still to place after this one: leave them room below
        cands = [t for t in g if t < chosen[-1]][left:]
        before = len(evaluated)
        i = ternary_search(lambda k, c=chosen, ts=cands: evaluate((*c, ts[k])), 0, len(cands) - 1)
        chosen = (*chosen, cands[i])
        value = evaluate(chosen)
        pairs = [(c[-1], v) for c, v in evaluated[before:]]
        steps.append({"time": cands[i], "index": g.index(cands[i]), "value": value, "evaluated": pairs})
    return SearchResult(taus=list(chosen), value=value, evaluated=evaluated, steps=steps)
