"""sCM in TrigFlow (cmlearn.core.scm): the VE <-> TrigFlow map, the jvp tangent, the loss and its CLI path."""

import math

import numpy as np
import pytest
import torch

from cmlearn.cli import main
from cmlearn.core.jvp import total_derivative_fd
from cmlearn.core.pfode import drift
from cmlearn.core.scm import SCMLoss, TrigFlowFunction, sct_velocity, teacher_velocity, trig_time
from cmlearn.data.toys2d import preset
from cmlearn.nets.mlp import MLP

SD = 0.5


def _model(dtype=torch.float64, *, time_input="t", **kw):
    torch.manual_seed(0)
    return TrigFlowFunction(MLP(2, width=32, depth=2, **kw), sigma_data=SD, time_input=time_input).to(dtype)


def _state(n=128, seed=0):
    dist = preset("eight_gaussians")
    g = torch.Generator().manual_seed(seed)
    x0 = dist.sample(n, generator=g)
    t = torch.rand(n, generator=g, dtype=torch.float64) * 1.4 + 0.05
    z = SD * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return dist, x0, t, torch.cos(t)[:, None] * x0 + torch.sin(t)[:, None] * z


def test_teacher_velocity_is_the_ve_pf_ode_retimed():
    """x_t = cos(t) x_sigma, sigma = sd tan t: dx_t/dt = -sin(t) x_sigma + cos(t) (dx/dsigma) sd / cos^2(t)."""
    dist, _, t, x_t = _state()
    sigma = SD * torch.tan(t)
    x_sigma = x_t / torch.cos(t)[:, None]
    expected = -torch.sin(t)[:, None] * x_sigma + drift(x_sigma, sigma, denoiser=dist.denoiser) * (
        SD / torch.cos(t))[:, None]
    got = teacher_velocity(dist.denoiser, x_t, t, sigma_data=SD)
    assert float((got - expected).norm() / expected.norm()) < 1e-12


def test_stable_sct_tangent_is_close_to_the_pf_ode_velocity():
    """stable_target: sCT's dx_t/dt becomes the batch's estimate of the exact PF ODE velocity (teacher_velocity of
    the exact denoiser): measured on 3000 points 0.019 at t = 0.5 and 0.005 at 1.5 against the conditional
    tangent's 0.52 and 0.70; the loss refuses it with a teacher (sCD's tangent is the teacher's already)."""
    dist, g = preset("eight_gaussians"), torch.Generator().manual_seed(0)
    x0 = dist.sample(3000, generator=g).double()
    z = SD * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    for tv in (0.5, 1.5):
        t = torch.full((3000,), tv, dtype=torch.float64)
        x_t = math.cos(tv) * x0 + math.sin(tv) * z
        exact = teacher_velocity(dist.denoiser, x_t, t, sigma_data=SD)
        plain = sct_velocity(x0, z, t, sigma_data=SD)
        stable = sct_velocity(x0, z, t, sigma_data=SD, stable_target=True)
        err, err_plain = (float((v - exact).norm(dim=1).mean()) for v in (stable, plain))
        assert err < 0.1 * err_plain, (tv, err, err_plain)
    with pytest.raises(ValueError, match="stable_target=True"):
        SCMLoss(dist.denoiser, stable_target=True)
    # the loss uses it: the same draws give another loss
    torch.manual_seed(0)
    model = TrigFlowFunction(MLP(2, width=16, depth=1), sigma_data=SD)
    x = dist.sample(128, generator=g).float()
    plain, stable = (SCMLoss(stable_target=s)(model, model, x, generator=torch.Generator().manual_seed(2))
                     for s in (False, True))
    assert torch.isfinite(stable).all() and not torch.allclose(plain, stable)


@pytest.mark.parametrize("time_input", ["t", "log_tan"])
def test_tangent_is_cos_t_times_the_total_derivative_of_f(time_input):
    """With r = 1, sCM's g equals cos(t) df_-/dt along the PF ODE, checked by the finite-difference twin."""
    dist, _, t, x_t = _state()
    model = _model(time_input=time_input)
    v = teacher_velocity(dist.denoiser, x_t, t, sigma_data=SD)
    _, g = SCMLoss(sigma_data=SD).tangent(model, x_t, t, v, r=1.0)
    with torch.no_grad():
        _, df_dt = total_derivative_fd(model.trig, x_t, t, v)
    expected = torch.cos(t)[:, None] * df_dt
    assert float((g - expected).norm() / expected.norm()) < 1e-6


def test_log_tan_time_input_is_edm_log_sigma():
    """time_input='log_tan' feeds the net log(sigma / sd) / 4, sigma = sd tan t clamped at eps (finite at t = 0)."""
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x, c):
            seen.append(c)
            return torch.zeros_like(x)

    model = TrigFlowFunction(Probe(), sigma_data=SD, time_input="log_tan")
    x = torch.randn(3, 2, dtype=torch.float64)
    model(x, torch.tensor([0.01, 0.5, 80.0], dtype=torch.float64))
    assert torch.allclose(seen[-1], 0.25 * torch.log(torch.tensor([0.01, 0.5, 80.0], dtype=torch.float64) / SD))
    assert torch.equal(model.trig(x, 0.0), x) and torch.isfinite(seen[-1]).all()
    with pytest.raises(ValueError, match="time_input"):
        TrigFlowFunction(Probe(), time_input="sigma")


@pytest.mark.parametrize("time_input", ["t", "log_tan"])
def test_ve_interface_and_boundary_condition(time_input):
    model = _model(time_input=time_input)
    x = torch.randn(16, 2, dtype=torch.float64)
    assert torch.equal(model.trig(x, 0.0), x)
    sigma = 3.0
    t = trig_time(torch.tensor(sigma, dtype=torch.float64), sigma_data=SD)
    assert torch.allclose(model(x, sigma), model.trig(math.cos(float(t)) * x, float(t)), atol=1e-12)
    assert torch.allclose(model(x, 1e-6), x, atol=1e-5)


def test_loss_trains_net_and_weighting_and_obeys_its_switches():
    model = _model(torch.float32)
    x0 = preset("eight_gaussians").sample(256, generator=torch.Generator().manual_seed(0)).float()

    def run(**kw):
        loss_fn = SCMLoss(**kw)
        model.zero_grad()
        loss = loss_fn(model, model, x0, k=kw.pop("k", 0) if "k" in kw else 0,
                       generator=torch.Generator().manual_seed(1))
        return loss_fn, loss

    fn, loss = run()
    assert loss.shape == (256,) and torch.isfinite(loss).all() and fn.last_tangent_norm > 0
    loss.mean().backward()
    assert float(model.net.body[0].weight.grad.norm()) > 0 and float(model.weight.bias.grad.abs()) > 0
    a = SCMLoss(tangent_norm=0.0)(model, model, x0, generator=torch.Generator().manual_seed(1))
    b = SCMLoss(tangent_norm=0.1)(model, model, x0, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)
    early = SCMLoss(warmup=100)(model, model, x0, k=0, generator=torch.Generator().manual_seed(1))
    late = SCMLoss(warmup=100)(model, model, x0, k=100, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(late, b) and not torch.allclose(early, b)


def test_cli_sct_and_scd_on_a_point_cloud(tmp_path, capsys):
    np.save(tmp_path / "pts.npy", preset("two_moons").sample(400, generator=torch.Generator().manual_seed(0)).numpy())
    data = ["--data", str(tmp_path / "pts.npy"), "--steps", "3"]
    assert main(["train", "toy-sct", *data, "--out", str(tmp_path / "sct")]) == 0
    assert main(["train", "toy-scd", *data, "--out", str(tmp_path / "scd")]) != 0  # no exact score for a file
    assert "--teacher empirical" in capsys.readouterr().err
    assert main(["train", "toy-scd", *data, "--teacher", "empirical", "--out", str(tmp_path / "scd")]) == 0
    assert main(["sample", str(tmp_path / "scd"), "--n", "8", "--steps", "2", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (8, 2)


def test_continuous_presets_build_and_run_one_loss_step():
    """Every continuous-time preset builds its model and its loss gives a finite value on one batch."""
    from cmlearn.train.continuous import continuous_loss
    from cmlearn.train.presets import get_preset
    from cmlearn.train.runs import build_model, build_source, build_teacher

    for name in ("toy-sct", "toy-scd", "toy-meanflow", "digits-sct", "digits-meanflow"):
        cfg = get_preset(name)
        source = build_source(cfg)
        model = build_model(cfg, shape=source.shape)
        teacher = build_teacher(cfg, source, torch.device("cpu")) if cfg.kind == "scd" else None
        x0 = source.batch(4, torch.Generator().manual_seed(0))
        loss = continuous_loss(cfg, teacher)(model, model, x0, generator=torch.Generator().manual_seed(0))
        assert loss.shape == (4,) and torch.isfinite(loss).all(), name


def test_config_keys_reach_the_model_and_loss():
    """time_input (sCM) and mf_adaptive_p (MeanFlow) travel from the config; bad values stop at the config."""
    from cmlearn.train.continuous import continuous_loss
    from cmlearn.train.presets import get_preset
    from cmlearn.train.runs import build_model

    cfg = get_preset("toy-sct").override({"time_input": "log_tan"})
    assert build_model(cfg, shape=(2,)).time_input == "log_tan"
    assert continuous_loss(get_preset("toy-meanflow").override({"mf_adaptive_p": 0.0})).adaptive_p == 0.0
    with pytest.raises(ValueError, match="time_input"):
        get_preset("toy-sct").override({"time_input": "sigma"})
    with pytest.raises(ValueError, match="mf_adaptive_p"):
        get_preset("toy-cd").override({"mf_adaptive_p": 0.5})
    with pytest.raises(ValueError, match="mf_adaptive_p >= 0"):
        get_preset("toy-meanflow").override({"mf_adaptive_p": -1.0})


def test_scd_distills_a_learned_teacher_run(tmp_path):
    """sCD with a learned teacher (a toy-edm RUN_DIR, Issue 14's "exact-score and learned teachers"): the loss's
    teacher is that run's EMA denoiser, and the CLI trains and samples the student."""
    from cmlearn.train.presets import get_preset
    from cmlearn.train.runs import build_source, build_teacher, load_run

    edm = tmp_path / "edm"
    assert main(["train", "toy-edm", "--steps", "3", "--out", str(edm)]) == 0
    cfg = get_preset("toy-scd").override({"teacher": str(edm)})
    teacher = build_teacher(cfg, build_source(cfg), torch.device("cpu"))
    x, sigma = torch.randn(5, 2), torch.full((5,), 0.7)
    assert torch.equal(teacher(x, sigma), load_run(edm).model(x, sigma))
    assert main(["train", "toy-scd", "--teacher", str(edm), "--steps", "3", "--out", str(tmp_path / "scd")]) == 0
    assert main(["sample", str(tmp_path / "scd"), "--n", "8", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()
