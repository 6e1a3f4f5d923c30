"""Quality against NFE (cmlearn.train.nfe, cmlearn.course.nfe, benchmarks/nfe_sweep.py): every method at every
budget it can spend, the winners, the table and figure, and the benchmark end to end (fast mode)."""

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

from cmlearn.core.parameterization import ConsistencyFunction
from cmlearn.course.nfe import methods_for, nfe_table, plot_nfe
from cmlearn.data.toys2d import preset
from cmlearn.nets.mlp import MLP
from cmlearn.train.config import TrainConfig
from cmlearn.train.nfe import exact_method, generate_nfe, point_metrics, sweep, winners
from cmlearn.train.runs import Run

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


def _cm_run():
    cfg = TrainConfig(kind="ct", net="mlp", net_kwargs={"width": 16, "depth": 1, "emb_dim": 8})
    model = ConsistencyFunction(MLP(2, width=16, depth=1, emb_dim=8)).eval().requires_grad_(False)
    return Run(cfg=cfg, model=model, path=Path("untrained-cm"), step=0, shape=(2,))


def test_sweep_measures_each_method_where_it_can_spend_the_budget():
    dist = preset("eight_gaussians")
    ref = dist.sample(500, generator=torch.Generator().manual_seed(1))
    methods = methods_for({"cd": _cm_run()}, exact=dist, cm_max_nfe=2)
    res = sweep(methods, [1, 2, 4, 34], point_metrics(ref, n_energy=300, n_projections=50), n=500)
    assert set(res["exact score, Heun"]) == {2, 4, 34}  # Heun spends 2 calls per step
    assert set(res["exact score, Euler (DDIM)"]) == {1, 2, 4, 34} and set(res["CD"]) == {1, 2}
    dpm = res["exact score, DPM-Solver++(2M)"]
    assert dpm[34]["sw"] < dpm[4]["sw"] < dpm[1]["sw"]  # more calls, closer to the data (exact score)
    assert res["CD"][1]["sw"] > dpm[34]["sw"]  # an untrained CM is far off
    assert all(row["s_per_10k"] > 0 and row["energy"] >= 0 for rows in res.values() for row in rows.values())
    best = winners(res, "sw")
    assert set(best) == {1, 2, 4, 34} and best[34][0].startswith("exact score")
    table = nfe_table(res, "sw")
    assert table.count("\n") == len(res) + 1 and "| CD |" in table and "NFE 34" in table
    fig = plot_nfe(res, "sw", floor=0.01)
    assert len(fig.axes[0].lines) == len(res) + 1


def test_same_seed_same_noise_for_every_method():
    dist = preset("eight_gaussians")
    a = exact_method(dist, "euler")(50, 1, torch.Generator().manual_seed(3))
    b = exact_method(dist, "dpmpp-2m")(50, 1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # one step of DPM-Solver++(2M) is DDIM


def test_generate_nfe_refuses_what_a_run_cannot_do():
    run = _cm_run()
    assert generate_nfe(run, 7, 2).shape == (7, 2)
    with pytest.raises(ValueError, match="for EDM teacher runs"):
        generate_nfe(run, 7, 2, sampler="heun")


@pytest.mark.skipif(os.environ.get("CMLEARN_FAST") != "1", reason="trains smoke-sized runs: fast mode only")
def test_benchmark_runs_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/nfe_sweep.py", "--part", "toy", "--methods", "pd", "--n", "500",
                          "--cache", str(tmp_path / "runs"), "--json", str(tmp_path / "r.json"),
                          "--fig", str(tmp_path / "f.png")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| PD |" in out.stdout and "winner at each budget" in out.stdout
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "runs").is_dir()


@pytest.mark.skipif(os.environ.get("CMLEARN_FAST") != "1", reason="trains smoke-sized runs: fast mode only")
def test_the_continuous_time_models_join_the_toy_sweep(tmp_path, monkeypatch):
    # notebook 11 reuses notebook 10's sCT and MeanFlow runs (same preset, same name, so the same cache directory)
    from cmlearn.course.nfe import toy_runs

    monkeypatch.setenv("CMLEARN_CACHE", str(tmp_path))
    runs = toy_runs(("sct", "meanflow"))
    assert {p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir()} == {"nb10-toy-sct", "nb10-toy-meanflow"}
    assert runs["sct"].cfg.kind == "sct" and runs["meanflow"].cfg.kind == "meanflow"
    dist = preset("eight_gaussians")
    ref = dist.sample(300, generator=torch.Generator().manual_seed(1))
    res = sweep(methods_for(runs, cm_max_nfe=2), [1, 2, 4], point_metrics(ref, n_energy=200, n_projections=50),
                n=300)
    assert set(res) == {"sCT", "MeanFlow"}
    assert all(set(rows) == {1, 2} and all(r["sw"] > 0 for r in rows.values()) for rows in res.values())
