import pytest
import torch

from cmlearn.core.pfode import euler_step
from cmlearn.core.schedules import karras_sigmas
from cmlearn.data.toys2d import preset
from cmlearn.theory import theorem2


@pytest.fixture(scope="module")
def setup():
    return theorem2.fixed_network(width=32, depth=2, seed=0), preset("eight_gaussians")


def test_losses_share_draws_and_match_algorithms_by_hand(setup):
    model, dist = setup
    N, M, seed = 12, 64, 5
    res = theorem2.loss_and_grads(model, dist, N=N, M=M, seed=seed)
    # the same draws by hand: x from the data generator, then the index n and z from one shared generator
    x0 = dist.sample(M, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed * 7919 + 1)
    ts = karras_sigmas(N)
    i = torch.randint(N - 1, (M,), generator=g)
    z = torch.randn(x0.shape, dtype=x0.dtype, generator=g)
    t_n, t_n1 = ts[i], ts[i + 1]
    x_n1 = x0 + t_n1[:, None] * z
    out = model(x_n1, t_n1)
    with torch.no_grad():
        cd_target = model(euler_step(x_n1, t_n1, t_n, score=dist.score), t_n)  # Alg. 2, Euler, exact score
        ct_target = model(x0 + t_n[:, None] * z, t_n)  # Alg. 3: the same z
    l_cd = (out - cd_target).pow(2).mean(1).mean()
    l_ct = (out - ct_target).pow(2).mean(1).mean()
    assert res["loss_cd"] == pytest.approx(float(l_cd.detach()), rel=1e-10)
    assert res["loss_ct"] == pytest.approx(float(l_ct.detach()), rel=1e-10)
    params = list(model.parameters())
    g_cd = torch.cat([p.flatten() for p in torch.autograd.grad(l_cd, params, retain_graph=True)])
    assert torch.allclose(res["g_cd"], g_cd, rtol=1e-8, atol=1e-14)
    # chunking does not change the estimate
    chunked = theorem2.loss_and_grads(model, dist, N=N, M=M, seed=seed, chunk=M)
    assert torch.allclose(chunked["g_ct"], res["g_ct"])


def test_theorem2_trend_in_N(setup):
    model, dist = setup
    res = theorem2.theorem2_vs_N(model, dist, Ns=(10, 20, 40, 80), M=4000, M_cond=1500, seed=1)
    # both losses are O(dt^2) and so is their difference: L_CD = L_CT + o(dt)
    assert 1.5 <= res["order_cd"] <= 2.5 and 1.5 <= res["order_ct"] <= 2.5
    assert res["order_diff"] > 1.5
    assert all(d > 0 for d in res["diff"])  # CT carries the conditional variance of z given x_t
    assert all(a > b for a, b in zip(res["dt"], res["dt"][1:]))
    # with z averaged out given x_{t_{n+1}} the remaining gap is the true one: relative order dt (Theorem 2)
    assert 0.7 <= res["order_rel_cond"] <= 1.4
    assert all(a > b for a, b in zip(res["rel_cond"], res["rel_cond"][1:]))
    assert all(c > 0.9999 for c in res["cosine_cond"])


def test_a_wrong_teacher_breaks_the_trend(setup):
    model, dist = setup

    def biased(x, t):  # a denoiser 2% off: CD's Euler step is then off by O(dt), not O(dt^2)
        return 1.02 * dist.denoiser(x, t)

    res = theorem2.theorem2_vs_N(model, dist, Ns=(10, 20, 40, 80), M=200, M_cond=1500, seed=1, teacher=biased)
    assert res["order_rel_cond"] < 0.3 and min(res["rel_cond"]) > 5e-3


def test_posterior_quadrature_moments(setup):
    _, dist = setup
    gen = torch.Generator().manual_seed(0)
    x = 1.5 * torch.randn(6, 2, dtype=torch.float64, generator=gen)
    t = torch.tensor([0.003, 0.05, 0.3, 1.0, 5.0, 60.0], dtype=torch.float64)
    nodes, w = theorem2.posterior_quadrature(dist, x, t)
    assert torch.allclose(w.sum(1), torch.ones(6, dtype=torch.float64))
    mean = (w[..., None] * nodes).sum(1)
    assert torch.allclose(mean, dist.denoiser(x, t), atol=1e-10)  # Tweedie / Lemma 1
    # second moments against many posterior samples (Monte Carlo, loose)
    draws = torch.stack([dist.posterior_sample(x, t, generator=gen) for _ in range(4000)])
    second = (w[..., None, None] * nodes[..., :, None] * nodes[..., None, :]).sum(1)
    mc = (draws[..., :, None] * draws[..., None, :]).mean(0)
    assert torch.allclose(second, mc, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="order="):
        theorem2.posterior_quadrature(dist, x, t, order=0)


def test_conditional_target_is_the_average_ct_target(setup):
    model, dist = setup
    gen = torch.Generator().manual_seed(1)
    x0 = dist.sample(5, generator=gen)
    t_next = torch.tensor([0.05, 0.2, 0.6, 2.0, 10.0], dtype=torch.float64)
    t_cur = 0.7 * t_next
    x_next = x0 + t_next[:, None] * torch.randn(5, 2, dtype=torch.float64, generator=gen)
    exact = theorem2.conditional_ct_target(model, dist, x_next, t_next, t_cur, order=3)
    assert torch.allclose(exact, theorem2.conditional_ct_target(model, dist, x_next, t_next, t_cur), atol=1e-6)
    with torch.no_grad():  # CT's target x + t_n z with (x, z) drawn given x_{t_{n+1}}
        draws = [dist.posterior_sample(x_next, t_next, generator=gen) for _ in range(3000)]
        mc = torch.stack([model(x_next + (t_cur - t_next)[:, None] * (x_next - x) / t_next[:, None], t_cur)
                          for x in draws]).mean(0)
    assert torch.allclose(exact, mc, atol=3e-3)


def test_gradient_gap_is_a_monte_carlo_floor(setup):
    model, dist = setup
    res = theorem2.gradient_floor_vs_M(model, dist, N=40, Ms=(500, 2000, 8000), repeats=4, seed=2)
    assert -0.8 <= res["slope"] <= -0.25
    assert res["rel_diff"][-1] < res["rel_diff"][0]
    gap = theorem2.mean_difference(model, dist, N=40, M=2000, batches=6, seed=3)
    assert gap["ratio"] < 6  # the mean difference is within its noise: no systematic gap
    assert gap["rel_mean"] < gap["rel_single"]


@pytest.mark.parametrize("call, match", [
    (lambda m, d: theorem2.loss_and_grads(m, d, N=10, M=0), "M="),
    (lambda m, d: theorem2.loss_and_grads(m, d, N=1, M=10), "N="),
    (lambda m, d: theorem2.gradient_floor_vs_M(m, d, repeats=1), "repeats="),
    (lambda m, d: theorem2.mean_difference(m, d, batches=1), "batches="),
])
def test_bad_input(setup, call, match):
    with pytest.raises(ValueError, match=match):
        call(*setup)


def test_plot(setup):
    import matplotlib

    matplotlib.use("Agg")
    from cmlearn.course.theory_plots import plot_theorem2

    model, dist = setup
    vs = theorem2.theorem2_vs_N(model, dist, Ns=(10, 20), M=200)
    fl = theorem2.gradient_floor_vs_M(model, dist, N=10, Ms=(100, 200), repeats=2)
    assert len(plot_theorem2(vs, fl).axes) == 3
    vs = theorem2.theorem2_vs_N(model, dist, Ns=(10, 20), M=200, M_cond=0)
    assert vs["rel_cond"] == [] and "order_rel_cond" not in vs
    assert len(plot_theorem2(vs, fl).axes) == 3
