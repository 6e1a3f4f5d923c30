"""Greedy + ternary search of time points: exact argmin at every position (the 2-point bracket), greedy schedule."""

import pytest
import torch

from cmlearn.core.sampling import default_taus
from cmlearn.core.search import search_timesteps, ternary_search


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 10, 18, 41])
def test_ternary_search_finds_every_argmin(n):
    for m in range(n):
        def f(k, m=m):
            return (k - m) ** 2 + 0.1 * abs(k - m)

        assert ternary_search(f, 0, n - 1) == m, (n, m)
        # asymmetric unimodal shapes too
        assert ternary_search(lambda k, m=m: (k - m) * (3.0 if k > m else -0.5), 0, n - 1) == m


def test_ternary_search_is_logarithmic_and_checks_bracket():
    calls = []
    ternary_search(lambda k: calls.append(k) or abs(k - 700), 0, 999)
    assert len(calls) < 60
    with pytest.raises(ValueError, match="empty bracket"):
        ternary_search(lambda k: 0.0, 3, 2)


def test_greedy_finds_separable_optimum():
    grid = default_taus(40)  # decreasing, 40 times from T
    target = [grid[0], grid[11], grid[25], grid[39]]

    def metric(taus):  # separable: each position has its own unimodal cost in log t
        return sum((torch.tensor(t).log() - torch.tensor(s).log()).abs().item() for t, s in zip(taus, target)) \
            + 10.0 * (4 - len(taus))

    res = search_timesteps(None, metric, n_steps=4, grid=grid)
    assert res.taus == pytest.approx(target)
    assert res.value == pytest.approx(0.0, abs=1e-9)
    assert len(res.steps) == 3 and [s["time"] for s in res.steps] == pytest.approx(target[1:])
    assert all(len(s["evaluated"]) <= 2 * 10 + 3 for s in res.steps)
    keys = [c for c, _ in res.evaluated]
    assert len(keys) == len(set(keys))  # memoized: each candidate evaluated once


def test_greedy_end_of_grid_and_errors():
    grid = [0.01, 0.1, 1.0, 10.0, 80.0]
    res = search_timesteps(None, lambda taus: -len(taus) - sum(1 / t for t in taus[1:]), n_steps=2, grid=grid)
    assert res.taus == [80.0, 0.01]  # the minimum at the lowest end of the grid
    res = search_timesteps(None, lambda taus: sum(taus[1:]), n_steps=3, grid=grid, first=10.0)
    assert res.taus == [10.0, 0.1, 0.01]  # enough grid points are left below each choice for the later steps
    with pytest.raises(ValueError, match="n_steps = 6"):
        search_timesteps(None, lambda taus: 0.0, n_steps=6, grid=grid)
    with pytest.raises(ValueError, match="n_steps"):
        search_timesteps(None, lambda taus: 0.0, n_steps=0, grid=grid)


def test_search_with_model_samples():
    from cmlearn.core.parameterization import ConsistencyFunction
    from cmlearn.nets.mlp import MLP

    torch.manual_seed(0)
    model = ConsistencyFunction(MLP(2, width=16, depth=2)).eval()
    seen = []

    def metric(x):
        seen.append(x.shape)
        return float(x.square().mean())

    res = search_timesteps(model, metric, n_steps=2, grid=default_taus(10), n=64, shape=(2,))
    assert len(res.taus) == 2 and res.taus[0] == 80.0 and res.taus[1] < 80.0
    assert all(s == (64, 2) for s in seen)


def test_schedule_panel_driven_from_code_and_search_plot():
    import matplotlib

    matplotlib.use("Agg")
    from cmlearn.core.parameterization import ConsistencyFunction
    from cmlearn.course.sampling import plot_search, schedule_from_controls, schedule_panel
    from cmlearn.nets.mlp import MLP

    assert schedule_from_controls(3, [0.1, 1.0, 5.0]) == [80.0, 1.0, 0.1]  # crossed sliders are sorted
    assert schedule_from_controls(1, [0.1, 1.0, 5.0]) == [80.0]
    torch.manual_seed(0)
    model = ConsistencyFunction(MLP(2, width=16, depth=2)).eval()
    panel = schedule_panel(model, torch.randn(200, 2) * 0.5, steps=2)
    assert len(panel.state["taus"]) == 2
    panel.controls["steps"].value = 3
    panel.controls["t3"].value = 0.05
    assert len(panel.state["taus"]) == 3 and abs(panel.state["taus"][2] - 0.05) < 1e-6
    assert "schedule" in panel.summary.value
    res = search_timesteps(None, lambda taus: sum(abs(t - 1.0) for t in taus[1:]), n_steps=3, grid=default_taus(12))
    plot_search(res, sweeps={2: [(0.5, 1.0), (2.0, 1.0)]}, even={2: 0.5})
