import json
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from cmlearn.core.pfode import solve  # noqa: E402
from cmlearn.core.schedules import karras_sigmas  # noqa: E402
from cmlearn.course import plotting  # noqa: E402
from cmlearn.course.panels import pf_ode_compute, pf_ode_panel  # noqa: E402
from cmlearn.data.toys2d import preset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_plot_functions_return_figures():
    g = preset("two_moons")
    x = g.sample(100)
    assert len(plotting.plot_points(x).axes[0].collections) == 1
    assert len(plotting.plot_density(g, t=0.1).axes[0].images) == 1
    traj = solve(80 * torch.randn(5, 2, dtype=torch.float64), karras_sigmas(6).flip(0), score=g.score,
                 return_trajectory=True)
    fig = plotting.plot_trajectories(traj)
    assert len(fig.axes[0].lines) == 5
    fig = plotting.plot_consistency_along_trajectory(karras_sigmas(6), traj)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 5
    fig = plotting.plot_orders([10, 20, 40], {"euler": [0.4, 0.2, 0.1]})
    assert "order 1.00" in fig.axes[0].get_legend().get_texts()[0].get_text()
    assert plotting.image_grid(torch.zeros(10, 1, 8, 8), nrow=4).shape == (24, 32, 1)
    g = plotting.image_grid(-torch.ones(10, 1, 8, 8), nrow=4, pad=1)  # black tiles, white 1-pixel gaps
    assert g.shape == (26, 35, 1) and (g[8, :, 0] == 1).all() and (g[:, 8, 0] == 1).all() and g[0, 0, 0] == 0


def test_log_axes_read_as_plain_numbers():
    import matplotlib.pyplot as plt

    fig = plotting.plot_orders([20, 40, 80], {"euler": [0.4, 0.2, 0.1], "heun": [0.1, 0.025, 0.006]})
    fig.canvas.draw()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["20", "40", "80"]  # not 2 x 10^1
    assert not [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    for lo, hi in ((0.05, 0.5), (0.012, 0.03), (1e-4, 1.0)):  # a decade, under half a decade, four decades
        fig, ax = plt.subplots()
        ax.semilogx([lo, hi], [0, 1])
        plotting.readable_log_axis(ax.xaxis)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert len(labels) >= 2 and all("^" not in t and "times" not in t for t in labels), (lo, hi, labels)
        assert not [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
        plt.close(fig)


def test_compute_layer_is_deterministic_and_reacts():
    g = preset("eight_gaussians")
    a = pf_ode_compute(g, N=10, eps=0.002, rho=7.0, n=200)
    b = pf_ode_compute(g, N=10, eps=0.002, rho=7.0, n=200)
    assert torch.equal(a["end"], b["end"])  # re-seeded: sliders do not reshuffle
    c = pf_ode_compute(g, N=3, eps=0.002, rho=7.0, n=200)
    assert c["sw"] > a["sw"]  # a coarse grid lands farther from the data


@pytest.mark.parametrize("name, value", [("N", 4), ("eps", 0.1), ("rho", 2.0), ("method", "euler")])
def test_panel_sliders_update_outputs(name, value):
    panel = pf_ode_panel(preset("eight_gaussians"), n=200)
    before_text, before_end = panel.summary.value, panel.state["end"].clone()
    panel.controls[name].value = value
    assert panel.summary.value != before_text
    assert not torch.equal(panel.state["end"], before_end)


def test_committed_notebooks_have_no_outputs():
    nbs = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert nbs, "no notebooks found"
    for p in nbs:
        nb = json.loads(p.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, p.name
