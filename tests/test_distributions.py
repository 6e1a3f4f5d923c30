import math

import pytest
import torch

from cmlearn.core.distributions import EmpiricalDistribution, GaussianMixture
from cmlearn.data.toys2d import PRESETS, preset


def full_cov_mixture(d=3):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, d, d, dtype=torch.float64, generator=g)
    covs = A @ A.transpose(1, 2) * 0.1 + 0.05 * torch.eye(d, dtype=torch.float64)
    means = torch.randn(2, d, dtype=torch.float64, generator=g)
    return GaussianMixture(means, covs, torch.tensor([0.3, 0.7]))


@pytest.mark.parametrize("gmm", [full_cov_mixture(), preset("two_moons")], ids=["full", "iso"])
@pytest.mark.parametrize("t", [0.0, 0.1, 2.0])
def test_score_is_grad_log_prob_and_tweedie(gmm, t):
    x = torch.randn(64, gmm.dim, dtype=torch.float64).requires_grad_(True)
    grad = torch.autograd.grad(gmm.log_prob(x, t).sum(), x)[0]
    assert torch.allclose(gmm.score(x, t), grad, atol=1e-10)
    assert torch.allclose(gmm.denoiser(x, t), x + t**2 * grad, atol=1e-10)


def test_log_prob_matches_torch_distributions():
    gmm = full_cov_mixture()
    t = 0.7
    comp = torch.distributions.MultivariateNormal(gmm.means, gmm.covs + t**2 * torch.eye(3, dtype=torch.float64))
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(gmm.weights), comp)
    x = torch.randn(32, 3, dtype=torch.float64)
    assert torch.allclose(gmm.log_prob(x, t), ref.log_prob(x), atol=1e-10)


def test_sample_moments():
    gmm = full_cov_mixture()
    x = gmm.sample(200_000, generator=torch.Generator().manual_seed(1))
    w = gmm.weights
    mean = (w[:, None] * gmm.means).sum(0)
    second = (w[:, None, None] * (gmm.covs + gmm.means[:, :, None] * gmm.means[:, None, :])).sum(0)
    assert torch.allclose(x.mean(0), mean, atol=0.01)
    assert torch.allclose(x.T @ x / len(x), second, atol=0.02)


def test_posterior_sample_mean_is_denoiser():
    gmm = preset("eight_gaussians")
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64).expand(40_000, 2)
    t = 0.4
    post = gmm.posterior_sample(x, t, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(post.mean(0), gmm.denoiser(x[:1], t)[0], atol=0.01)
    full = full_cov_mixture(2)
    xf = torch.tensor([[0.1, 0.2]], dtype=torch.float64).expand(40_000, 2)
    pf = full.posterior_sample(xf, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(pf.mean(0), full.denoiser(xf[:1], 0.5)[0], atol=0.01)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_scaled(name):
    gmm = preset(name)
    m, s = gmm.mean_and_std()
    assert s == pytest.approx(0.5, rel=1e-9) and m.abs().max() < 1e-12
    x = gmm.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert math.sqrt(x.var(0).sum() / 2) == pytest.approx(0.5, rel=0.03)


def test_empirical_distribution_matches_tiny_variance_mixture():
    pts = torch.randn(50, 2, dtype=torch.float64)
    emp = EmpiricalDistribution(pts, chunk=200)  # forces chunking
    gmm = GaussianMixture(pts, torch.full((50,), 1e-300, dtype=torch.float64).clamp_min(1e-30))
    x = torch.randn(37, 2, dtype=torch.float64)
    for t in (0.05, 1.0):
        assert torch.allclose(emp.score(x, t), gmm.score(x, t), atol=1e-8)
        assert torch.allclose(emp.log_prob(x, t), gmm.log_prob(x, t), atol=1e-8)
    with pytest.raises(ValueError, match="t > 0"):
        emp.score(x, 0.0)


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(2, 2), torch.ones(2), torch.tensor([0.5, 0.6])), "sum to 1"),
    ((torch.zeros(2, 2), torch.tensor([[[1.0, 0], [0, -1.0]], [[1.0, 0], [0, 1.0]]])), r"covs\[0\]"),
    ((torch.zeros(2, 2), torch.ones(3)), "covs must have shape"),
    ((torch.zeros(2), torch.ones(2)), "means must have shape"),
])
def test_gmm_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(*args)


def test_shape_mismatch_and_unknown_preset():
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        preset("spiral").score(torch.zeros(4, 3, dtype=torch.float64), 1.0)
    with pytest.raises(ValueError, match="'moons'"):
        preset("moons")
