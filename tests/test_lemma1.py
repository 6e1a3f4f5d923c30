import pytest
import torch

from cmlearn.core.distributions import GaussianMixture
from cmlearn.data.toys2d import preset
from cmlearn.theory import lemma1


def gaussian(s=0.4, d=2):
    mean = torch.full((1, d), 0.3, dtype=torch.float64)
    return GaussianMixture(mean, torch.tensor([s**2], dtype=torch.float64))


def test_mc_score_is_unbiased_and_tweedie_mean():
    dist = preset("eight_gaussians")
    g = torch.Generator().manual_seed(0)
    x_t = lemma1.noisy_points(dist, 8, 0.3, generator=g)
    xs = lemma1.posterior_samples(dist, x_t, 0.3, 8000, generator=g)
    assert xs.shape == (8000, 8, 2)
    # Tweedie: the posterior mean is the denoiser; Lemma 1: the averaged estimator is the score
    se = xs.std(0) / 8000**0.5
    assert ((xs.mean(0) - dist.denoiser(x_t, 0.3)).abs() < 5 * se).all()
    s_hat = lemma1.mc_score(dist, x_t, 0.3, 8000, generator=g)
    assert ((s_hat - dist.score(x_t, 0.3)).abs() < 5 * se / 0.3**2).all()


def test_posterior_trace_cov_matches_gaussian_formula_and_samples():
    s, t = 0.4, 0.7
    dist = gaussian(s, d=3)
    x_t = torch.randn(5, 3, dtype=torch.float64)
    want = 3 * t**2 * s**2 / (s**2 + t**2)  # Cov[x | x_t] = t^2 s^2 / (s^2 + t^2) I
    got = lemma1.posterior_trace_cov(dist, x_t, t)
    assert torch.allclose(got, torch.full((5,), want, dtype=torch.float64), rtol=1e-10)
    mix = preset("two_moons")
    x_t = lemma1.noisy_points(mix, 4, 0.2, generator=torch.Generator().manual_seed(1))
    xs = lemma1.posterior_samples(mix, x_t, 0.2, 40_000, generator=torch.Generator().manual_seed(2))
    measured = xs.var(0).sum(1)
    assert torch.allclose(measured, lemma1.posterior_trace_cov(mix, x_t, 0.2), rtol=0.05)


def test_error_falls_like_inverse_sqrt_M():
    res = lemma1.score_error_vs_M(preset("eight_gaussians"), t=0.5, Ms=(1, 4, 16, 64), n=300, seed=3)
    assert -0.6 <= res["slope"] <= -0.4
    for got, want in zip(res["rmse"], res["predicted"]):
        assert got == pytest.approx(want, rel=0.15)


def test_single_sample_variance_shape_in_t():
    dist = preset("eight_gaussians")
    res = lemma1.single_sample_variance(dist, [0.01, 0.1, 1.0, 10.0], n=300, M=16, seed=4)
    for m, p in zip(res["measured"], res["predicted"]):
        assert m == pytest.approx(p, rel=0.15)
    # the one-sample estimator is noise-dominated at small t and nearly exact at large t
    assert res["relative"][0] > 10 and res["relative"][-1] < 0.01
    assert all(a > b for a, b in zip(res["relative"], res["relative"][1:]))


@pytest.mark.parametrize("call, match", [
    (lambda d: lemma1.noisy_points(d, 0, 0.5), "n="),
    (lambda d: lemma1.noisy_points(d, 5, 0.0), "t=0"),
    (lambda d: lemma1.mc_score(d, torch.zeros(3, 2, dtype=torch.float64), 0.5, 0), "M="),
    (lambda d: lemma1.score_error_vs_M(d, t=0.5, Ms=(4,)), "Ms="),
    (lambda d: lemma1.single_sample_variance(d, [0.5], M=1), "M="),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(preset("eight_gaussians"))


def test_plot_returns_figure():
    import matplotlib

    matplotlib.use("Agg")
    from cmlearn.course.theory_plots import plot_lemma1

    dist = preset("eight_gaussians")
    err = lemma1.score_error_vs_M(dist, t=1.0, Ms=(1, 4), n=50)
    var = lemma1.single_sample_variance(dist, [0.1, 1.0], n=50, M=4)
    fig = plot_lemma1(err, var)
    assert len(fig.axes) == 2
