import matplotlib
import pytest
import torch

from cmlearn.course import cd as cd_widgets
from cmlearn.data.toys2d import preset
from cmlearn.train.cache import train_or_load
from cmlearn.train.config import TrainConfig

matplotlib.use("Agg")


def tiny(**kw):
    base = dict(kind="cd", data="eight_gaussians", steps=4, checkpoint_every=2, log_every=2, batch_size=32,
                net_kwargs={"width": 16, "depth": 1, "emb_dim": 8}, mu=0.9)
    base.update(kw)
    return TrainConfig(**base)


def test_panel_compute_plot_and_wiring(tmp_path):
    dist = preset("eight_gaussians")
    run = train_or_load(tiny(N=6, solver="euler"), "w", cache=tmp_path)
    runs = {(6, "euler"): run}
    a = cd_widgets.cd_panel_compute(dist, N=6, solver="euler", runs=runs, n=200)
    b = cd_widgets.cd_panel_compute(dist, N=6, solver="euler", runs=runs, n=200)
    assert torch.equal(a["zero"], b["zero"]) and a["trained"] is not None and a["nfe_teacher"] == 5
    c = cd_widgets.cd_panel_compute(dist, N=18, solver="heun", runs=runs, n=200)
    assert c["trained"] is None and c["nfe_teacher"] == 34
    assert float(c["err_zero"].mean()) < float(a["err_zero"].mean())  # Heun N=18 is closer to the exact f
    fig = cd_widgets.cd_panel_plot(a)
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="unknown solver"):
        cd_widgets.cd_panel_compute(dist, N=6, solver="rk4", n=10)

    runs[(18, "heun")] = run  # any Run will do: the panel only samples it
    panel = cd_widgets.cd_panel(dist, runs=runs, N=18, n=200)
    assert set(panel.controls) == {"N", "solver"} and panel.state["N"] == 18
    assert list(panel.controls["N"].options) == [6, 18]  # the slider moves over the trained N only
    panel.controls["solver"].value = "euler"
    panel.controls["N"].value = 6
    assert (panel.state["N"], panel.state["solver"]) == (6, "euler") and panel.state["trained"] is not None
    assert "trained model" in panel.summary.value
    with pytest.raises(ValueError, match="no trained run"):
        cd_widgets.cd_panel(dist, runs=runs, N=12, n=50)
    untrained = cd_widgets.cd_panel(dist, N=12, n=50)  # no runs: every N from 2 to 80
    assert list(untrained.controls["N"].options) == list(range(2, 81)) and untrained.state["trained"] is None


def test_ablation_plot():
    fig = cd_widgets.plot_ablation({"euler": {6: 0.3, 18: 0.2}, "heun": {6: 0.25, 18: 0.1}}, bar=0.05)
    assert len(fig.axes[0].lines) == 3
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["6", "18"]


def test_panel_histogram_is_labelled():
    dist = preset("eight_gaussians")
    fig = cd_widgets.cd_panel_plot(cd_widgets.cd_panel_compute(dist, N=18, solver="heun", n=200))
    hist = fig.axes[2]
    fig.canvas.draw()
    assert hist.get_ylabel() == "samples"
    assert len([t for t in hist.get_xticklabels() if t.get_text()]) >= 2  # the error axis has readable ticks


def test_zero_loss_distance_ranks_solvers():
    dist = preset("eight_gaussians")
    ref = dist.sample(1000, generator=torch.Generator().manual_seed(0))
    heun18 = cd_widgets.zero_loss_distance(dist, ref, N=18, solver="heun")
    euler6 = cd_widgets.zero_loss_distance(dist, ref, N=6, solver="euler")
    heun6 = cd_widgets.zero_loss_distance(dist, ref, N=6, solver="heun")
    assert heun18 < euler6 < heun6  # Heun's corrector overshoots on the coarsest grid
    assert heun18 == cd_widgets.zero_loss_distance(dist, ref, N=18, solver="heun")
