"""Progressive distillation (cmlearn.core.pd, cmlearn.train.pd): the target, the grids, the rounds, the config,
and PD trained and sampled through the command line on a user's point cloud."""

import hashlib
import json

import numpy as np
import pytest
import torch

from cmlearn.cli import main
from cmlearn.core.pd import PDLoss, ddim_step, pd_target
from cmlearn.core.solvers import nfe_sigmas
from cmlearn.data.toys2d import preset
from cmlearn.train.cache import FORMAT, config_key
from cmlearn.train.config import ADDED_KEYS, TrainConfig
from cmlearn.train.pd import pd_rounds, round_config, round_dirs
from cmlearn.train.presets import get_preset

SMALL = ["net_kwargs={\"width\": 32, \"depth\": 2, \"emb_dim\": 16}", "batch_size=64", "log_every=10"]


def test_target_makes_one_student_step_land_where_two_teacher_steps_land():
    dist = preset("eight_gaussians")
    x = 5 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t, t_mid, t_next = (torch.full((64,), v, dtype=torch.float64) for v in (5.0, 1.0, 0.2))
    x_tilde = pd_target(dist.denoiser, x, t, t_mid, t_next)
    two = ddim_step(ddim_step(x, dist.denoiser(x, t), t, t_mid), dist.denoiser(ddim_step(x, dist.denoiser(x, t), t,
                                                                                          t_mid), t_mid), t_mid, t_next)
    assert torch.allclose(ddim_step(x, x_tilde, t, t_next), two, atol=1e-12)


def test_target_of_a_constant_denoiser_is_that_constant():
    """DDIM is exact when D does not change, so two steps equal one and the target is D itself."""
    c = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    x = torch.randn(8, 2, dtype=torch.float64)
    t, t_mid, t_next = (torch.full((8,), v, dtype=torch.float64) for v in (80.0, 3.0, 0.002))
    assert torch.allclose(pd_target(lambda y, s: c.expand_as(y), x, t, t_mid, t_next), c.expand_as(x))


@pytest.mark.parametrize("nfe", [1, 2, 8])
def test_student_grid_is_the_samplers_and_every_other_teacher_point(nfe):
    loss = PDLoss(lambda x, t: x, nfe=nfe)
    assert len(loss.fine) == 2 * nfe + 1
    assert torch.allclose(loss.student, nfe_sigmas("euler", nfe), rtol=1e-12)
    assert torch.allclose(loss.fine[::2][1:-1], nfe_sigmas("euler", nfe)[1:-1]) and loss.num_steps(0) == nfe


def test_loss_is_zero_for_a_student_that_already_matches_a_constant_teacher():
    c = torch.tensor([[0.1, 0.4]])
    loss = PDLoss(lambda y, s: c.expand_as(y), nfe=4)
    out = loss(lambda y, s: c.expand_as(y), None, torch.randn(32, 2), generator=torch.Generator().manual_seed(0))
    assert out.shape == (32,) and float(out.abs().max()) < 1e-10


def test_rounds_halve_to_pd_nfe_and_chain_their_teachers(tmp_path):
    cfg = get_preset("toy-pd").override({"pd_start": 32, "pd_nfe": 1})
    assert pd_rounds(cfg) == [16, 8, 4, 2, 1]
    dirs = round_dirs(cfg, tmp_path)
    assert dirs[1] == tmp_path and dirs[16] == tmp_path / "rounds" / "pd-0016"
    teacher = tmp_path / "edm"
    teacher.mkdir()
    get_preset("toy-edm").override({"data": "two_moons"}).save(teacher / "config.json")
    rc = round_config(cfg, 4, str(teacher))
    assert (rc.pd_nfe, rc.pd_start, rc.teacher, rc.init_from) == (4, 8, str(teacher), "teacher")
    assert rc.net_kwargs == get_preset("toy-edm").net_kwargs  # the student is its teacher's net (input_scale 10)
    assert pd_rounds(cfg.override({"pd_start": 0, "pd_nfe": 2})) == [2]


@pytest.mark.parametrize("over", [{"pd_start": 12}, {"pd_start": 1}, {"pd_nfe": 0}])
def test_bad_round_schedules_are_refused(over):
    with pytest.raises(ValueError, match="pd_start"):
        get_preset("toy-pd").override(over)


def test_pd_keys_are_refused_on_other_kinds_and_leave_old_hashes_alone():
    with pytest.raises(ValueError, match="pd_nfe"):
        get_preset("toy-cd").override({"pd_nfe": 4})
    cfg = get_preset("toy-cd")
    old = {k: v for k, v in cfg.to_dict().items() if k not in ADDED_KEYS}  # a config before PD (and later keys)
    assert {"pd_nfe", "pd_start"} <= set(ADDED_KEYS)
    blob = json.dumps({"format": FORMAT, **old}, sort_keys=True)
    assert config_key(cfg) == hashlib.sha1(blob.encode()).hexdigest()[:10]
    assert TrainConfig(**old) == cfg


def test_cli_trains_and_samples_pd_on_a_point_cloud(tmp_path, capsys):
    data = tmp_path / "cloud.npy"
    np.save(data, preset("two_moons").sample(2000, generator=torch.Generator().manual_seed(0)).numpy())
    edm, pd = tmp_path / "edm", tmp_path / "pd"
    assert main(["train", "toy-edm", "--data", str(data), "--out", str(edm), "--steps", "20", *SMALL]) == 0
    assert main(["train", "toy-pd", "--data", str(data), "--teacher", str(edm), "--out", str(pd), "--steps", "10",
                 "pd_start=4", *SMALL]) == 0
    for path, nfe in ((pd / "rounds" / "pd-0002", 2), (pd, 1)):
        saved = TrainConfig.load(path / "config.json")
        assert (saved.kind, saved.pd_nfe, saved.steps) == ("pd", nfe, 10)
    assert TrainConfig.load(pd / "config.json").teacher == str((pd / "rounds" / "pd-0002").resolve())
    assert main(["sample", str(pd), "--n", "50", "--out", str(tmp_path / "x.npy")]) == 0
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (50, 2) and np.isfinite(x).all()
    assert main(["sample", str(edm), "--sampler", "dpmpp-2m", "--nfe", "8", "--n", "40",
                 "--out", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (40, 2)
    capsys.readouterr()
    assert main(["sample", str(pd), "--steps", "2", "--out", str(tmp_path / "z.npy")]) == 2
    assert main(["sample", str(pd), "--sampler", "euler", "--out", str(tmp_path / "z.npy")]) == 2
    assert main(["sample", str(edm), "--sampler", "heun", "--nfe", "3", "--out", str(tmp_path / "z.npy")]) == 2
    assert main(["train", "toy-pd", "--data", str(data), "--out", str(tmp_path / "no"), "--steps", "2"]) == 2
    assert "exact score" in capsys.readouterr().err
    assert main(["train", "toy-pd", "--teacher", str(tmp_path / "nothing"), "--out", str(tmp_path / "no"),
                 "--steps", "2"]) == 2
    assert "teacher" in capsys.readouterr().err


def test_pd_from_the_exact_score_beats_its_ddim_at_one_step(tmp_path):
    """Two rounds (4 -> 2 -> 1 steps) from the mixture's exact denoiser, the first student from scratch: the 1-step
    student is far closer to the data than one DDIM step of the exact score and near the 4 DDIM steps it was
    distilled from (measured: sliced W2 0.13 against 0.50 and 0.10)."""
    from cmlearn.metrics import sliced_wasserstein
    from cmlearn.train.nfe import exact_method, generate_nfe
    from cmlearn.train.pd import load_rounds, train_pd

    dist = preset("eight_gaussians")
    cfg = get_preset("toy-pd").override({"net_kwargs": {"width": 64, "depth": 3, "emb_dim": 16}, "batch_size": 256,
                                         "pd_start": 4, "steps": 300, "checkpoint_every": 300, "lr": 2e-3,
                                         "ema_decay": 0.95})
    assert cfg.teacher == "exact"
    train_pd(cfg, tmp_path / "pd", progress=False)
    assert TrainConfig.load(tmp_path / "pd" / "rounds" / "pd-0002" / "config.json").init_from == ""
    assert TrainConfig.load(tmp_path / "pd" / "config.json").init_from == "teacher"
    ref = dist.sample(4000, generator=torch.Generator().manual_seed(1))
    ddim1, ddim4 = (sliced_wasserstein(exact_method(dist, "euler")(4000, k, torch.Generator().manual_seed(0)), ref)
                    for k in (1, 4))
    pd1 = sliced_wasserstein(generate_nfe(load_rounds(cfg, tmp_path / "pd")[1], 4000, 1), ref)
    assert pd1 < 0.5 * ddim1 and pd1 < 2 * ddim4, (pd1, ddim1, ddim4)


def test_digits_pd_preset_distills_the_digits_teacher(monkeypatch):
    for fast in ("0", "1"):
        monkeypatch.setenv("CMLEARN_FAST", fast)
        cfg = get_preset("digits-pd")
        assert (cfg.kind, cfg.net, cfg.data, cfg.teacher) == ("pd", "unet", "digits", "runs/digits-edm")
        assert cfg.net_kwargs == get_preset("digits-edm").net_kwargs  # each student starts from its teacher's weights
        assert pd_rounds(cfg)[-1] == 1


def test_pd_job_is_done_exactly_when_every_round_is_finished(tmp_path, monkeypatch):
    from cmlearn.course.nfe import digits_pd_config, pd_jobs, toy_pd_config
    from cmlearn.train.cache import run_dir
    from cmlearn.train.pd import pd_job

    monkeypatch.setenv("CMLEARN_FAST", "1")
    cfg = toy_pd_config().override({"steps": 4, "checkpoint_every": 2, "log_every": 2})
    job = pd_job(cfg, "pd", cache=tmp_path)
    assert [p for p, _ in job.runs] == list(round_dirs(cfg, run_dir(cfg, "pd", cache=tmp_path)).values())
    assert not job.done()
    job.here()  # trains every round here (side_by_side's workers=1 path)
    assert job.done()
    # notebook 11's jobs train the configs toy_runs / digits_runs load: the same directories
    monkeypatch.setenv("CMLEARN_CACHE", str(tmp_path))
    jobs = pd_jobs()
    assert jobs["toy PD"].runs[-1][0] == run_dir(toy_pd_config(), "nb11-toy-pd")
    edm = get_preset("digits-edm")
    digits = jobs["digits teacher, then PD"].runs
    assert digits[0][0] == run_dir(edm, "digits-edm")  # the teacher first (not shipped in fast mode)
    assert digits[-1][0] == run_dir(digits_pd_config(run_dir(edm, "digits-edm")), "nb11-digits-pd")
