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

    assert schedule_from_controls(3, [1.0, 0.1, 5.0]) == [80.0, 1.0, 0.1]
    assert schedule_from_controls(1, [0.1, 1.0, 5.0]) == [80.0]
    with pytest.raises(ValueError, match="must decrease"):
        schedule_from_controls(3, [0.1, 1.0, 5.0])  # crossed time points are an error, never silently re-sorted
    torch.manual_seed(0)
    model = ConsistencyFunction(MLP(2, width=16, depth=2)).eval()
    panel = schedule_panel(model, torch.randn(200, 2) * 0.5, steps=2)
    assert len(panel.state["taus"]) == 2
    panel.controls["steps"].value = 3
    panel.controls["t3"].value = 0.05
    assert len(panel.state["taus"]) == 3 and abs(panel.state["taus"][2] - 0.05) < 1e-6
    assert "schedule" in panel.summary.value
    res = search_timesteps(None, lambda taus: sum(abs(t - 1.0) for t in taus[1:]), n_steps=3, grid=default_taus(12))
    fig = plot_search(res, sweeps={2: [(0.5, 1.0), (2.0, 1.0)]}, even={2: 0.5})
    for ax in fig.axes:  # plain tick labels (0.1, 0.2, 0.5 ...), no overlapping minor labels like 2 x 10^-1
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
        assert not labels, labels
        assert all("times" not in t.get_text() and "^" not in t.get_text() for t in ax.get_xticklabels())


def _panel(**kw):
    from cmlearn.core.parameterization import ConsistencyFunction
    from cmlearn.course.sampling import schedule_panel
    from cmlearn.nets.mlp import MLP

    torch.manual_seed(0)
    model = ConsistencyFunction(MLP(2, width=16, depth=2)).eval()
    return schedule_panel(model, torch.randn(100, 2) * 0.5, **kw)


def test_schedule_panel_keeps_the_values_code_sets():
    from cmlearn.course.sampling import time_grid

    grid = time_grid()
    assert {0.8, 0.2, 0.05, 1.0, 0.1, 0.47} - set(grid) == {0.47}  # round values, exactly representable
    assert all(0.002 < t < 80.0 for t in grid) and grid == sorted(grid)
    panel = _panel(steps=2, times=(0.8, 0.2, 0.05))
    assert [panel.controls[n].value for n in ("t2", "t3", "t4")] == [0.8, 0.2, 0.05]  # defaults on the grid
    panel.controls["steps"].value = 3
    panel.controls["t2"].value = 1.0
    panel.controls["t3"].value = 0.1
    assert panel.state["taus"] == [80.0, 1.0, 0.1]  # exactly what the code set
    searched = _panel(steps=3, times=(0.47, 0.131, 0.05))  # off-grid defaults join the grid
    assert searched.state["taus"] == [80.0, 0.47, 0.131]
    with pytest.raises(ValueError, match="decrease"):
        _panel(times=(0.2, 0.8, 0.05))
    with pytest.raises(ValueError, match="decrease"):
        _panel(times=(100.0, 0.8, 0.05))


def test_schedule_panel_keeps_the_time_points_ordered():
    panel = _panel(steps=3, times=(0.8, 0.2, 0.05))
    panel.controls["t2"].value = 0.01  # below tau3 = 0.2, which is in use: stops one step above it
    assert panel.controls["t2"].value == 0.25 and panel.state["taus"] == [80.0, 0.25, 0.2]
    assert "stops at 0.25" in panel.summary.value
    panel.controls["t3"].value = 5.0  # above tau2: stops one step below it
    assert panel.state["taus"] == [80.0, 0.25, 0.2] and panel.controls["t3"].value == 0.2
    panel.controls["t4"].value = 0.3  # unused (3 calls), but still kept below tau3
    assert panel.controls["t4"].value == 0.15 and panel.state["taus"] == [80.0, 0.25, 0.2]
    panel.controls["t3"].value = 0.12  # moving down is free
    assert "stops" not in panel.summary.value
    # with 2 calls, tau3 and tau4 are unused: tau2 moves freely and pushes them along
    panel.controls["steps"].value = 2
    panel.controls["t2"].value = 0.01
    t2, t3, t4 = (panel.controls[n].value for n in ("t2", "t3", "t4"))
    assert t2 == 0.01 > t3 > t4 and panel.state["taus"] == [80.0, 0.01]
    panel.controls["steps"].value = 4  # all in use, still ordered: nothing was relabelled
    assert panel.state["taus"] == [80.0, t2, t3, t4]


@pytest.mark.parametrize("moved", [0, 1, 2])
@pytest.mark.parametrize("active", [0, 1, 2, 3])
def test_ordered_indices_never_reorders(moved, active):
    from cmlearn.course.sampling import ordered_indices

    for wanted in range(0, 30):
        idx, got = ordered_indices([20, 12, 5], moved, wanted, active=active, size=30)
        assert idx[0] > idx[1] > idx[2] >= 0 and idx[0] < 30, (idx, moved, wanted, active)
        assert got == idx[moved]
        for j in range(active):  # sliders in use other than the moved one never move
            if j != moved:
                assert idx[j] == [20, 12, 5][j]
