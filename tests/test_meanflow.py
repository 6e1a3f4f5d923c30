"""MeanFlow (cmlearn.core.meanflow): the exact average velocity, the loss, 1-step sampling, the CLI path."""

import numpy as np
import pytest
import torch

from cmlearn.cli import main
from cmlearn.core.meanflow import (
    MeanFlowLoss,
    MeanFlowModel,
    batch_velocity,
    exact_average_velocity,
    exact_velocity,
    sample_times,
)
from cmlearn.core.sampling import meanflow_sample, meanflow_velocity_sample
from cmlearn.data.toys2d import preset
from cmlearn.metrics import sliced_wasserstein
from cmlearn.nets.mlp import MLP
from cmlearn.train.presets import get_preset


def test_exact_one_step_is_a_sample_of_the_data():
    """x = z - u(z, 0, 1) with the exact u (dopri5 on the exact mixture) is distributed like the data."""
    dist = preset("eight_gaussians")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 2, dtype=torch.float64, generator=g)
    x = z - exact_average_velocity(dist.denoiser, z, 0.0, 1.0)
    ref = dist.sample(2000, generator=g)
    floor = sliced_wasserstein(dist.sample(2000, generator=g), ref)
    assert sliced_wasserstein(x, ref) < 2 * floor
    assert sliced_wasserstein(z, ref) > 10 * floor  # the noise itself is far


def test_exact_velocity_limits_and_average_of_velocity():
    """v(z, 1) = z - E[x]; u(z, t, t) = v(z, t); u over a short interval is close to v at its midpoint."""
    dist = preset("eight_gaussians")
    z = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(exact_velocity(dist.denoiser, z, 1.0), z - dist.means.mean(0), atol=1e-5)
    assert torch.equal(exact_average_velocity(dist.denoiser, z, 0.4, 0.4), exact_velocity(dist.denoiser, z, 0.4))
    u = exact_average_velocity(dist.denoiser, z, 0.5, 0.501)
    v = exact_velocity(dist.denoiser, z, 0.501)
    assert torch.allclose(u, v, rtol=1e-2, atol=1e-2) and not torch.allclose(u, v, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="0 <= r <= t <= 1"):
        exact_average_velocity(dist.denoiser, z, 0.6, 0.5)


def test_sample_times_ratio_and_order():
    r, t = sample_times(20_000, ratio=0.25, generator=torch.Generator().manual_seed(0))
    assert (r <= t).all() and (t < 1).all() and (r > 0).all()
    assert abs(float((r != t).double().mean()) - 0.25) < 0.02
    with pytest.raises(ValueError, match="ratio"):
        sample_times(4, ratio=1.5)


def test_uniform_times_reach_the_one_step_corner():
    """Uniform (r, t): min and max of two uniforms (means 1/3, 2/3); the logit-normal(-0.4, 1) almost never draws
    r < 0.05, the corner (r, t) = (0, 1) that one step from noise asks for."""
    g = torch.Generator().manual_seed(0)
    r, t = sample_times(40_000, sampler="uniform", ratio=1.0, generator=g)
    assert abs(float(r.mean()) - 1 / 3) < 0.01 and abs(float(t.mean()) - 2 / 3) < 0.01 and (r <= t).all()
    assert float((r < 0.05).double().mean()) > 0.08  # 1 - 0.95^2 = 0.0975
    r_ln, _ = sample_times(40_000, ratio=1.0, generator=g)
    assert float((r_ln < 0.05).double().mean()) < 0.02
    with pytest.raises(ValueError, match="sampler='beta'"):
        sample_times(4, sampler="beta")
    with pytest.raises(ValueError, match="mf_times='beta'"):
        get_preset("toy-meanflow").override({"mf_times": "beta"})
    with pytest.raises(ValueError, match="mf_times"):
        get_preset("toy-ict").override({"mf_times": "uniform"})
    with pytest.raises(ValueError, match="p_mean=-1.0.*no effect with mf_times='uniform'"):
        get_preset("toy-meanflow").override({"p_mean": -1.0})
    from cmlearn.train.continuous import continuous_loss

    assert continuous_loss(get_preset("toy-meanflow")).sampler == "uniform"
    logit = get_preset("toy-meanflow").override({"mf_times": "logit_normal"})
    assert (continuous_loss(logit).sampler, logit.p_mean, logit.p_std) == ("logit_normal", -0.4, 1.0)
    assert continuous_loss(get_preset("digits-meanflow").override({"mf_times": "uniform"})).sampler == "uniform"


def test_batch_velocity_is_the_marginal_velocity_with_less_noise():
    """The stable-target estimate (stable_target=true) is e - x0 where t is tiny (the own point's weight is 1), and
    at t = 0.05 ... 0.99 far closer to the exact marginal velocity than e - x0 (measured on 4000 points: 0.087 vs
    1.07 at t = 0.05, 0.004 vs 0.71 at t = 0.99); float32 agrees with float64."""
    dist = preset("eight_gaussians")
    g = torch.Generator().manual_seed(0)
    x0 = dist.sample(2000, generator=g).double()
    e = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    tiny = torch.full((2000,), 1e-6, dtype=torch.float64)
    assert torch.allclose(batch_velocity(x0, e, tiny), e - x0, atol=1e-9)
    assert torch.isfinite(batch_velocity(x0, e, torch.zeros(2000, dtype=torch.float64))).all()
    for tv in (0.05, 0.3, 0.99):
        t = torch.full((2000,), tv, dtype=torch.float64)
        exact = exact_velocity(dist.denoiser, (1 - tv) * x0 + tv * e, t)
        err = float((batch_velocity(x0, e, t) - exact).norm(dim=1).mean())
        assert err < 0.2 * float((e - x0 - exact).norm(dim=1).mean()), (tv, err)
        low = batch_velocity(x0.float(), e.float(), t.float()).double()
        assert float((low - batch_velocity(x0, e, t)).abs().max()) < 1e-4
    imgs = torch.randn(6, 1, 4, 4, generator=g)  # any shape: the data are flattened
    assert batch_velocity(imgs, torch.randn_like(imgs), torch.full((6,), 0.5)).shape == imgs.shape
    from cmlearn.train.continuous import continuous_loss

    assert continuous_loss(get_preset("toy-meanflow").override(["stable_target=true"])).stable_target
    # the loss uses it: same draws, another target, and at (r, t) = (t, t) the target is the estimate itself
    torch.manual_seed(0)
    model = MeanFlowModel(MLP(2, width=16, depth=1, n_times=2))
    x = dist.sample(256, generator=g).float()
    plain, stable = (MeanFlowLoss(ratio=0.0, adaptive_p=0.0, stable_target=s)(
        model, model, x, generator=torch.Generator().manual_seed(3)) for s in (False, True))
    gen = torch.Generator().manual_seed(3)
    r, t = sample_times(256, ratio=0.0, generator=gen)
    e = torch.randn(x.shape, generator=gen)
    tf = t.float()
    z = (1 - tf[:, None]) * x + tf[:, None] * e
    with torch.no_grad():
        u = model(z, tf, tf)
    for loss, v in ((plain, e - x), (stable, batch_velocity(x, e, tf))):
        assert torch.allclose(loss.detach(), (u - v).pow(2).sum(1), rtol=1e-4, atol=1e-5)


def test_loss_is_finite_and_trains_the_net():
    torch.manual_seed(0)
    model = MeanFlowModel(MLP(2, width=32, depth=2, n_times=2))
    loss_fn = MeanFlowLoss()
    x0 = preset("eight_gaussians").sample(256, generator=torch.Generator().manual_seed(0)).float()
    loss = loss_fn(model, model, x0, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (256,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert float(model.net.body[0].weight.grad.norm()) > 0


def test_one_step_sampling_is_z_minus_u():
    model = MeanFlowModel(MLP(2, width=16, depth=1, n_times=2)).eval()
    z = torch.randn(8, 2)
    assert torch.allclose(meanflow_sample(model, z, steps=1), z - model(z, 0.0, 1.0))
    with pytest.raises(ValueError, match="steps"):
        meanflow_sample(model, z, steps=0)


class ExactMeanFlow(torch.nn.Module):
    """u(z, r, t) of the mixture, exactly (dopri5 on its flow ODE); float64."""

    def __init__(self, dist):
        super().__init__()
        self.dist, self.dummy = dist, torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, z, r, t):
        return exact_average_velocity(self.dist.denoiser, z, float(r), float(t))


def test_euler_on_the_instantaneous_velocity_converges_to_the_one_step_map():
    """Euler on v(z, t) = u(z, t, t) approaches the exact x = z - u(z, 0, 1) at order about 1 in the step count."""
    model = ExactMeanFlow(preset("eight_gaussians"))
    z = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = meanflow_sample(model, z, steps=1)
    errs = [float((meanflow_velocity_sample(model, z, steps=k) - exact).norm(dim=1).mean()) for k in (25, 50, 100)]
    assert errs[0] > errs[1] > errs[2] and 1.4 < errs[0] / errs[1] < 2.8 and 1.4 < errs[1] / errs[2] < 2.8, errs
    with pytest.raises(ValueError, match="steps"):
        meanflow_velocity_sample(model, z, steps=0)


def test_cli_trains_samples_and_evaluates_a_point_cloud(tmp_path, capsys):
    pts = preset("two_moons").sample(500, generator=torch.Generator().manual_seed(0)).numpy()
    np.save(tmp_path / "pts.npy", pts)
    out = tmp_path / "run"
    assert main(["train", "toy-meanflow", "--data", str(tmp_path / "pts.npy"), "--out", str(out), "--steps", "5"]) == 0
    assert main(["sample", str(out), "--n", "16", "--steps", "2", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (16, 2)
    assert main(["sample", str(out), "--n", "4", "--ts", "80", "--out", str(tmp_path / "t.npy")]) != 0
    assert "give steps, not taus" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--n", "200"]) == 0
    printed = capsys.readouterr().out
    assert "sw_1step" in printed and "sw_*: sliced Wasserstein-2 distance" in printed and "nll_*" not in printed


def test_a_short_training_learns_the_exact_average_velocity():
    """300 MeanFlow steps (width-64 MLP, half the pairs with r != t) bring u(z, r, t) toward the exact average
    velocity of the mixture (dopri5 on its exact flow ODE): measured relative errors 0.52 on (0, 1) and 0.20 on
    (0.5, 1) against 1.00 untrained; the full toy-meanflow run: benchmarks/continuous_toys.py and notebook 10."""
    from cmlearn.course.continuous import average_velocity_error

    dist = preset("eight_gaussians")
    torch.manual_seed(0)
    model = MeanFlowModel(MLP(2, width=64, depth=3, n_times=2))
    pairs = ((0.0, 1.0), (0.5, 1.0))
    before = average_velocity_error(model, dist, pairs=pairs, n=1000)
    loss_fn, opt = MeanFlowLoss(ratio=0.5), torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        loss = loss_fn(model, model, dist.sample(256, generator=g).float(), generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = average_velocity_error(model, dist, pairs=pairs, n=1000)
    assert min(before.values()) > 0.95
    assert after[(0.0, 1.0)] < 0.7 and after[(0.5, 1.0)] < 0.35, after


def test_own_flow_distances_of_the_exact_model_reach_the_data():
    """With the exact u, one jump is exact and Euler on v (the same noise) converges to it: the two distances agree
    within a tenth of the data-vs-data distance, Euler with 2 steps is far off."""
    from cmlearn.course.continuous import own_flow_distances
    from cmlearn.metrics import sliced_wasserstein

    dist = preset("eight_gaussians")
    g = torch.Generator().manual_seed(1)
    ref = dist.sample(400, generator=g)
    floor = sliced_wasserstein(dist.sample(400, generator=g), ref)
    res = own_flow_distances(ExactMeanFlow(dist), ref, jumps=(1,), euler=(2, 50))
    assert abs(res["jumps"][1] - res["euler"][50]) < 0.1 * floor, (res, floor)
    assert res["jumps"][1] < 2.5 * floor and res["euler"][2] > 2 * res["jumps"][1], (res, floor)
