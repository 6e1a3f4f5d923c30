import math

import pytest
import torch

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.pfode import euler_step, heun_step
from cmlearn.core.schedules import EPS, karras_sigmas
from cmlearn.data.toys2d import preset
from cmlearn.theory import theorem1
from cmlearn.theory.orders import fit_order


def gaussian(s=0.4, mu=(0.3, -0.5)):
    return GaussianMixture(torch.tensor([mu], dtype=torch.float64), torch.tensor([s**2], dtype=torch.float64))


def gaussian_f(x, t, *, s=0.4, mu=(0.3, -0.5)):
    """The exact consistency function of N(mu, s^2 I): a linear map towards mu."""
    mu = torch.tensor(mu, dtype=torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    return mu + torch.sqrt((s**2 + EPS**2) / (s**2 + t**2)) * (x - mu)


def test_zero_loss_model_is_the_composed_solver_row_by_row():
    dist = preset("two_moons")
    ts = karras_sigmas(12)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, dtype=torch.float64, generator=g) * 3
    idx = torch.tensor([0, 1, 4, 7, 11, 11])
    got = theorem1.zero_loss_model(x, idx, ts, score=dist.score, solver="euler")
    for r in range(len(x)):
        want = x[r : r + 1]
        for j in range(int(idx[r]), 0, -1):
            want = euler_step(want, ts[j], ts[j - 1], score=dist.score)
        assert torch.allclose(got[r : r + 1], want, atol=1e-13)
    assert torch.equal(got[0], x[0])  # index 0 is eps: the boundary condition f(x, eps) = x


def test_zero_loss_model_has_zero_cd_loss():
    dist = preset("eight_gaussians")
    ts = karras_sigmas(18)
    g = torch.Generator().manual_seed(1)
    for i in (1, 5, 17):
        x = dist.sample(64, generator=g) + float(ts[i]) * torch.randn(64, 2, dtype=torch.float64, generator=g)
        online = theorem1.zero_loss_model(x, i, ts, score=dist.score, solver="heun")
        target = theorem1.zero_loss_model(heun_step(x, ts[i], ts[i - 1], score=dist.score), i - 1, ts,
                                          score=dist.score, solver="heun")
        assert (online - target).abs().max() < 1e-12


def test_zero_loss_model_rejects_bad_input():
    ts = karras_sigmas(5)
    x = torch.zeros(3, 2, dtype=torch.float64)
    score = gaussian().score
    with pytest.raises(ValueError, match="indices must lie in"):
        theorem1.zero_loss_model(x, 5, ts, score=score)
    with pytest.raises(ValueError, match="shape"):
        theorem1.zero_loss_model(x, torch.tensor([1, 2]), ts, score=score)
    with pytest.raises(ValueError, match="unknown solver"):
        theorem1.zero_loss_model(x, 1, ts, score=score, solver="rk4")


def test_exact_trajectory_points_match_the_closed_form():
    dist = gaussian()
    ts = karras_sigmas(9)
    x_eps, traj = theorem1.exact_trajectory_points(dist, ts, 200, generator=torch.Generator().manual_seed(2))
    assert traj.shape == (9, 200, 2) and torch.equal(traj[0], x_eps)
    for i in range(1, 9):
        assert (gaussian_f(traj[i], float(ts[i])) - x_eps).abs().max() < 1e-6


def test_fit_order_recovers_a_power_law_and_its_sign_convention():
    dt = [0.5, 0.25, 0.125, 0.0625]
    err = [3 * d**1.7 for d in dt]
    assert fit_order([1 / d for d in dt], err) == pytest.approx(1.7, abs=1e-12)  # error ~ C dt^p: pass 1/dt
    assert fit_order(dt, err) == pytest.approx(-1.7, abs=1e-12)  # error ~ C x^-p with x = dt: p = -1.7
    Ns = [10, 20, 40]
    assert fit_order(Ns, [N**-0.5 for N in Ns]) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        fit_order([0.1], [0.2])
    with pytest.raises(ValueError, match="positive"):
        fit_order([0.1, 0.2], [0.0, 0.1])
    with pytest.raises(ValueError, match="finite"):
        fit_order([0.1, 0.2], [float("inf"), 0.1])
    curve = theorem1.ErrorCurve("heun", [9, 17, 33], dt[:3], err[:3], err[:3], [])
    assert curve.order("mean") == pytest.approx(1.7, abs=1e-12)
    assert curve.order("sup", min_N=17) == pytest.approx(1.7, abs=1e-12)


def test_nested_grids_and_positions():
    assert theorem1.nested_sizes(3, 5) == [9, 17, 33]
    coarse, fine = karras_sigmas(9), karras_sigmas(33)
    assert torch.equal(theorem1.grid_positions(coarse, fine), torch.arange(0, 33, 4))
    with pytest.raises(ValueError, match="not on the solver grid"):
        theorem1.grid_positions(karras_sigmas(10), fine)
    assert theorem1.max_step(karras_sigmas(18)) == pytest.approx(80.0 - 57.586, abs=1e-3)


def test_zero_loss_error_orders_euler_one_heun_two():
    dist = preset("eight_gaussians")
    curves = theorem1.zero_loss_errors(dist, [17, 33, 65], m=150, eval_N=17,
                                       generator=torch.Generator().manual_seed(3))
    e, h = curves["euler"], curves["heun"]
    assert all(a > b for a, b in zip(e.mean, e.mean[1:])) and all(a > b for a, b in zip(h.mean, h.mean[1:]))
    assert 0.8 <= e.order("mean") <= 1.2
    assert 1.8 <= h.order("mean", min_N=33) <= 2.4
    assert all(s >= mu for s, mu in zip(h.sup, h.mean))
    assert e.errors[0].shape == (16, 150)


def test_model_errors_of_the_exact_function_vanish():
    dist = gaussian()
    ts = karras_sigmas(9)
    x_eps, traj = theorem1.exact_trajectory_points(dist, ts, 100, generator=torch.Generator().manual_seed(4))
    err = theorem1.model_errors(lambda x, t: gaussian_f(x, t), ts, x_eps, traj)
    assert err.shape == (8, 100) and err.max() < 1e-6
    with pytest.raises(ValueError, match="holds"):
        theorem1.model_errors(lambda x, t: x, ts[:5], x_eps, traj)


def test_local_lipschitz_of_a_gaussian_is_its_contraction():
    dist, s = gaussian(), 0.4
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    t = torch.linspace(0.01, 40.0, 50, dtype=torch.float64)
    L = theorem1.local_lipschitz(x, t, score=dist.score, n=64, chunk=16)
    want = torch.sqrt((s**2 + EPS**2) / (s**2 + t**2))
    assert torch.allclose(L, want, rtol=5e-3)
    f = theorem1.fine_consistency_function(x, t, score=dist.score, n=64)
    assert torch.allclose(f, gaussian_f(x, t), atol=1e-3)
    with pytest.raises(ValueError, match=">= eps"):
        theorem1.fine_consistency_function(x, 1e-4, score=dist.score)


def test_local_lipschitz_is_large_between_modes():
    dist = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64),
                           torch.tensor([0.01, 0.01], dtype=torch.float64))
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # the boundary, and a mode centre
    L = theorem1.local_lipschitz(x, 0.3, score=dist.score, n=64)
    assert L[0] > 5 and L[1] < 1


def test_stretch_shares_and_top_fraction():
    errors = torch.tensor([[1.0, 2.0, 3.0, 100.0], [5.0, 1.0, 1.0, 1.0]])
    lips = torch.tensor([[1.0, 1.0, 1.0, 50.0], [1.0, 1.0, 1.0, 1.0]])
    worst, everyone = theorem1.stretch_shares(errors, lips, frac=0.25, stretch=5.0)
    assert worst == 0.5 and everyone == 1 / 8
    assert set(theorem1.top_fraction(torch.arange(10.0), 0.2).tolist()) == {9, 8}
    with pytest.raises(ValueError, match="frac"):
        theorem1.top_fraction(torch.arange(3.0), 0.0)
    with pytest.raises(ValueError, match="both be"):
        theorem1.stretch_shares(errors, lips[:1])


def test_plot_error_vs_dt_draws_curves_and_trained_markers():
    import matplotlib

    matplotlib.use("Agg")
    from cmlearn.course.theory_plots import plot_error_vs_dt

    curve = theorem1.ErrorCurve("euler", [9, 17], [40.0, 20.0], [0.1, 0.05], [0.3, 0.2], [])
    fig = plot_error_vs_dt({"euler": curve}, trained={"CD N=9": (40.0, 0.2)})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.lines) == 4
    assert math.isclose(curve.order("mean"), 1.0)


def test_theory_modules_draw_nothing():
    """The figures live in cmlearn.course.theory_plots: importing the theory checks loads no matplotlib."""
    import subprocess
    import sys

    code = ("import sys; import cmlearn.theory.theorem1, cmlearn.theory.theorem2, cmlearn.theory.lemma1, "
            "cmlearn.theory.toy_editing, cmlearn.theory.orders, cmlearn.core.distributions, cmlearn.core.pfode, "
            "cmlearn.core.losses, cmlearn.core.schedules; assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
