import numpy as np
import pytest
import torch

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.pfode import drift, euler_step, exact_consistency_function, heun_step, reference_solve, solve
from cmlearn.core.schedules import karras_sigmas
from cmlearn.data.toys2d import preset
from cmlearn.theory.orders import fit_order, solver_errors


def test_reference_solve_single_gaussian_closed_form():
    mu, s, eps, T = torch.tensor([0.3, -0.5], dtype=torch.float64), 0.4, 0.002, 80.0
    g = GaussianMixture(mu[None], torch.tensor([s**2], dtype=torch.float64))
    xT = mu + T * torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    want = mu + ((s**2 + eps**2) / (s**2 + T**2)) ** 0.5 * (xT - mu)
    got = reference_solve(xT, T, eps, score=g.score)
    assert (got - want).abs().max() < 1e-6


def test_drift_score_and_denoiser_agree():
    g = preset("eight_gaussians")
    x = torch.randn(10, 2, dtype=torch.float64)
    assert torch.allclose(drift(x, 0.7, score=g.score), drift(x, 0.7, denoiser=g.denoiser))
    with pytest.raises(ValueError, match="exactly one"):
        drift(x, 0.7)


def test_heun_step_is_trapezoid_of_euler():
    g = preset("two_moons")
    x = torch.randn(8, 2, dtype=torch.float64)
    xe = euler_step(x, 1.0, 0.8, score=g.score)
    want = x + (-0.2) * 0.5 * (drift(x, 1.0, score=g.score) + drift(xe, 0.8, score=g.score))
    assert torch.allclose(heun_step(x, 1.0, 0.8, score=g.score), want)


def test_solver_orders_on_mixture():
    g = preset("checkerboard")
    gen = torch.Generator().manual_seed(0)
    xT = g.sample(1000, generator=gen) + 80 * torch.randn(1000, 2, dtype=torch.float64, generator=gen)
    ref = reference_solve(xT, 80.0, 0.002, score=g.score)
    Ns = [20, 40, 80, 160]
    for method, lo, hi in [("euler", 0.8, 1.2), ("heun", 1.8, 2.3)]:
        errs = [(solve(xT, karras_sigmas(N).flip(0), score=g.score, method=method) - ref).norm(dim=1).mean()
                for N in Ns]
        order = -np.polyfit(np.log(Ns), np.log([float(e) for e in errs]), 1)[0]
        assert lo <= order <= hi, (method, order, errs)
    # the package helper agrees
    res = solver_errors(g, Ns=Ns, n=1000, seed=0)
    assert 0.8 <= fit_order(Ns, res["mean"]["euler"]) <= 1.2
    assert 1.8 <= fit_order(Ns, res["mean"]["heun"]) <= 2.3
    assert all(s >= m for s, m in zip(res["sup"]["heun"], res["mean"]["heun"]))


def test_trajectory_and_consistency_function():
    g = preset("spiral")
    xT = 80 * torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ts = karras_sigmas(60).flip(0)
    traj = solve(xT, ts, score=g.score, return_trajectory=True)
    assert traj.shape == (60, 5, 2) and torch.equal(traj[0], xT)
    f = exact_consistency_function(xT, 80.0, score=g.score)
    assert (traj[-1] - f).norm(dim=1).max() < 0.05
    assert torch.equal(exact_consistency_function(xT, 0.002, score=g.score), xT)


@pytest.mark.parametrize("ts, match", [([1.0], "at least 2"), ([1.0, 2.0, 1.5], "monotone"), ([1.0, 0.0], "positive")])
def test_solve_bad_grid(ts, match):
    with pytest.raises(ValueError, match=match):
        solve(torch.zeros(2, 2, dtype=torch.float64), ts, score=lambda x, t: x)


def test_solve_unknown_method():
    with pytest.raises(ValueError, match="'rk4'"):
        solve(torch.zeros(2, 2), [2.0, 1.0], score=lambda x, t: x, method="rk4")
