import json

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from cmlearn.cli import main  # noqa: E402
from cmlearn.core.losses import CTLoss, ICTLoss  # noqa: E402
from cmlearn.course import ct as ct_widgets  # noqa: E402
from cmlearn.train.evaluate import sample_distance  # noqa: E402
from cmlearn.train.loop import make_loss  # noqa: E402
from cmlearn.train.presets import get_preset  # noqa: E402


def test_schedule_compute_endpoints_and_forms():
    r = ct_widgets.ct_schedule_compute(s0=2, s1=150, mu0=0.9, K=800_000)
    assert (r["N_start"], r["N_end"]) == (2, 151)
    assert r["mu_start"] == pytest.approx(0.9) and r["mu_end"] > r["mu_start"]
    assert r["N_ict"][0] == 11 and r["N_ict"][-1] == 1281
    assert all(b >= a for a, b in zip(r["N"], r["N"][1:]))
    off = ct_widgets.ct_schedule_compute(s0=2, s1=150, mu0=0.9, K=800_000, official=True)
    assert off["mu_start"] == pytest.approx(0.81) and off["N"] == r["N"]


@pytest.mark.parametrize("kw, match", [
    (dict(s0=0), "s0=0"), (dict(s1=1), "s1=1"), (dict(mu0=1.0), "mu0=1.0"), (dict(K=0), "K=0"),
    (dict(s0=1, official=True), "s0=1"),
])
def test_schedule_compute_bad_input(kw, match):
    args = dict(s0=2, s1=150, mu0=0.9, K=1000) | kw
    with pytest.raises(ValueError, match=match):
        ct_widgets.ct_schedule_compute(**args)


def test_schedule_panel_controls_drive_it():
    panel = ct_widgets.ct_schedule_panel(K=10_000)
    assert set(panel.controls) == {"s0", "s1", "mu0", "K", "official"}
    panel.controls["s1"].value = 40
    assert panel.state["N_end"] == 41 and "41" in panel.summary.value
    panel.controls["official"].value = True
    assert panel.state["mu_start"] == pytest.approx(0.81)
    panel.controls["s0"].value = 5
    assert panel.state["N_start"] == 5


def test_presets_build_the_right_losses():
    ct, ict = get_preset("toy-ct"), get_preset("toy-ict")
    assert ct.kind == "ct" and ict.kind == "ict" and ct.data == ict.data == "eight_gaussians"
    ct_loss, ict_loss = make_loss(ct), make_loss(ict)
    assert type(ct_loss) is CTLoss and type(ict_loss) is ICTLoss
    assert ct_loss.num_steps(0) == ct.s0 and ct_loss.num_steps(ct.K or ct.steps) == ct.s1 + 1
    assert ct_loss.target_decay(0) == pytest.approx(ct.mu0)
    assert ict_loss.target_decay(0) == 0.0 and ict_loss.num_steps(0) == ict.s0 + 1
    assert ict.distance == "pseudo_huber" and ict.weighting == "ict"


@pytest.mark.parametrize("preset", ["toy-ct", "toy-ict"])
def test_cli_trains_on_a_user_point_cloud(tmp_path, preset):
    pts = tmp_path / "pts.npy"
    np.save(pts, (0.5 * np.random.default_rng(0).standard_normal((500, 2))).astype(np.float32))
    out = tmp_path / "run"
    net = json.dumps({"width": 32, "depth": 2, "emb_dim": 16})
    assert main(["train", preset, "--data", str(pts), "--steps", "12", "--out", str(out), "batch_size=64",
                 "checkpoint_every=6", "log_every=4", f"net_kwargs={net}"]) == 0
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4, 8, 12] and all(np.isfinite(r["loss"]) for r in log)
    Ns = [r["N"] for r in log]
    assert Ns == sorted(Ns) and Ns[-1] > Ns[0]  # the curriculum advances
    assert main(["evaluate", str(out), "--n", "300"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["sw_1step"] > 0


def test_train_with_curve_records_and_reloads(tmp_path):
    cfg = get_preset("toy-ct").override({"steps": 8, "batch_size": 64, "checkpoint_every": 4, "log_every": 4,
                                         "net_kwargs": {"width": 32, "depth": 2, "emb_dim": 16}})
    ref = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5
    run, curve = ct_widgets.train_with_curve(cfg, "t", ref=ref, cache=tmp_path)
    assert run.step == 8 and [s for s, _ in curve] == [4, 8] and all(v > 0 for _, v in curve)
    ckpt = next(tmp_path.glob("t-*/checkpoints/latest.pt"))
    stamp = ckpt.stat().st_mtime_ns
    run2, curve2 = ct_widgets.train_with_curve(cfg, "t", ref=ref, cache=tmp_path)
    assert curve2 == curve and ckpt.stat().st_mtime_ns == stamp  # loaded, not retrained
    d1 = sample_distance(run.model, ref, seed=1)
    assert d1 == sample_distance(run2.model, ref, seed=1) and d1 == pytest.approx(curve[-1][1], rel=0.3)
    fig = ct_widgets.plot_curves({"a": curve}, bar=0.1, floor=0.05)
    assert len(fig.axes[0].lines) == 3
    with pytest.raises(ValueError, match="name"):
        ct_widgets.train_with_curve(cfg, "a/b", ref=ref, cache=tmp_path)


def test_curve_jobs_train_side_by_side_and_then_load(tmp_path):
    from cmlearn.train.parallel import side_by_side

    small = {"steps": 8, "batch_size": 64, "checkpoint_every": 4, "log_every": 4,
             "net_kwargs": {"width": 32, "depth": 2, "emb_dim": 16}}
    cfg = get_preset("toy-ict").override(small)
    members = {"adaptive": get_preset("toy-ct").override(small),
               18: get_preset("toy-ct").override({**small, "ct_fixed_N": 18, "ct_fixed_mu": 0.9884})}
    ref = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5
    jobs = {"one": ct_widgets.curve_job(cfg, "one", ref=ref, cache=tmp_path),
            "ensemble": ct_widgets.ensemble_curve_job(members, "ens", ref=ref, cache=tmp_path)}
    assert side_by_side(jobs, workers=2, progress=False) == ["one", "ensemble"]
    assert all(job.done() for job in jobs.values()) and side_by_side(jobs, workers=2) == []
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/checkpoints/latest.pt")}
    run, curve = ct_widgets.train_with_curve(cfg, "one", ref=ref, cache=tmp_path)
    runs, curves = ct_widgets.train_ensemble_with_curves(members, "ens", ref=ref, cache=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # loaded, not trained again
    assert [s for s, _ in curve] == [4, 8] and list(curves) == ["adaptive", 18]
    assert all([s for s, _ in c] == [4, 8] for c in curves.values())
    for key, r in runs.items():  # each curve's last point is the saved EMA model's distance
        assert sample_distance(r.model, ref, seed=0) == pytest.approx(curves[key][-1][1], rel=1e-6)
