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


def _joint_with_noise(gmm, t):
    """The mixture of (x_0, x_t = x_0 + t z) in 2d dimensions: covariances [[S, S], [S, S + t^2 I]] per component."""
    d = gmm.dim
    S = gmm.covs
    top = torch.cat([S, S], 2)
    bottom = torch.cat([S, S + t**2 * torch.eye(d, dtype=torch.float64)], 2)
    return GaussianMixture(torch.cat([gmm.means, gmm.means], 1), torch.cat([top, bottom], 1), gmm.weights)


def _moments(mix):
    """Mean (B, d) and covariance (B, d, d) of each row's mixture."""
    w = mix.log_weights.exp()
    m = mix.mean()
    second = (w[..., None, None] * (mix.covs + mix.means[..., :, None] * mix.means[..., None, :])).sum(1)
    return m, second - m[:, :, None] * m[:, None, :]


@pytest.mark.parametrize("gmm", [full_cov_mixture(), preset("two_moons")], ids=["full", "iso"])
@pytest.mark.parametrize("t", [0.05, 0.7, 5.0])
def test_posterior_is_the_joint_gaussian_conditioned_on_x_t(gmm, t):
    x = 1.3 * torch.randn(7, gmm.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    post = gmm.posterior(x, t)
    K, d = gmm.n_components, gmm.dim
    assert post.log_weights.shape == (7, K) and post.means.shape == (7, K, d) and post.covs.shape == (7, K, d, d)
    ref = _joint_with_noise(gmm, t).condition(list(range(d, 2 * d)), x)  # p(x_0 | x_t = x), closed form
    assert torch.allclose(post.log_weights, ref.log_weights, atol=1e-9)
    assert torch.allclose(post.means, ref.means, atol=1e-9)
    assert torch.allclose(post.covs, ref.covs, atol=1e-9)
    assert torch.allclose(post.mean(), gmm.denoiser(x, t), atol=1e-10)  # Tweedie
    tv = torch.full((7,), t, dtype=torch.float64)
    tv[0] = 2 * t  # per-row times: no shared covariance set
    assert torch.allclose(gmm.posterior(x, tv).covs[1:], post.covs[1:], atol=1e-12)
    assert torch.allclose(gmm.posterior(x[:1], 2 * t).covs, gmm.posterior(x, tv).covs[:1], atol=1e-12)


def test_posterior_moments_match_brute_force_integration():
    gmm = full_cov_mixture(2)
    x, t = torch.tensor([[0.3, -0.4], [1.5, 0.2]], dtype=torch.float64), 0.6
    g = torch.linspace(-6, 6, 801, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)  # x_0 candidates
    mean, cov = _moments(gmm.posterior(x, t))
    for b in range(len(x)):
        logw = gmm.log_prob(grid) - ((x[b] - grid) ** 2).sum(1) / (2 * t**2)  # p(x_0) N(x; x_0, t^2 I)
        w = torch.softmax(logw, 0)
        m = (w[:, None] * grid).sum(0)
        c = (w[:, None, None] * (grid - m)[:, :, None] * (grid - m)[:, None, :]).sum(0)
        assert torch.allclose(mean[b], m, atol=1e-6) and torch.allclose(cov[b], c, atol=1e-6)


def test_posterior_at_t_zero_is_a_point_mass():
    gmm = full_cov_mixture()
    x = torch.randn(5, 3, dtype=torch.float64)
    post = gmm.posterior(x, 0.0)
    assert torch.allclose(post.means, x[:, None].expand(-1, 2, -1), atol=1e-12)
    assert post.covs.abs().max() < 1e-12
    assert torch.allclose(gmm.posterior_sample(x, 0.0), x, atol=1e-6)


def test_condition_matches_the_normalised_joint_density():
    gmm = full_cov_mixture(2)
    v = torch.tensor([-0.7, 0.1, 0.9], dtype=torch.float64)
    mix = gmm.condition(0, v)
    assert mix.means.shape == (3, 2, 1) and mix.covs.shape == (3, 2, 1, 1)
    y = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    for b in range(len(v)):
        pts = torch.stack([v[b].expand_as(y), y], 1)
        dens = gmm.log_prob(pts).exp()
        dens = dens / torch.trapezoid(dens, y)  # p(x_1 | x_0 = v) by brute force
        comp = torch.distributions.Normal(mix.means[b, :, 0], mix.covs[b, :, 0, 0].sqrt())
        mine = (mix.log_weights[b] + comp.log_prob(y[:, None])).logsumexp(1).exp()
        assert torch.allclose(mine, dens, atol=1e-8)


def test_condition_on_several_coordinates_follows_their_order():
    gmm = full_cov_mixture(3)
    v = torch.tensor([[0.2, -0.5], [1.0, 0.3]], dtype=torch.float64)
    a, b = gmm.condition([2, 0], v), gmm.condition([0, 2], v.flip(1))
    assert torch.allclose(a.means, b.means) and torch.allclose(a.log_weights, b.log_weights)
    assert gmm.split([2, 0]) == ([2, 0], [1])
    with pytest.raises(ValueError, match="known"):
        gmm.condition([0, 1, 2], v)
    with pytest.raises(ValueError, match="values must have shape"):
        gmm.condition([0, 2], v[:, :1])


def test_mixture_rows_sample_moments_and_roots():
    gmm = full_cov_mixture(2)
    x = torch.tensor([[0.2, 0.1]], dtype=torch.float64).expand(100_000, 2)
    post = gmm.posterior(x, 0.8)
    R = post.roots()
    assert torch.allclose(R @ R.transpose(-1, -2), post.covs, atol=1e-12)
    mean, cov = _moments(post)
    for root in ("eigh", "cholesky"):
        s = post.sample(generator=torch.Generator().manual_seed(9), root=root)
        assert torch.allclose(s.mean(0), mean[0], atol=0.01)
        assert torch.allclose(s.T.cov(), cov[0], atol=0.01)
    with pytest.raises(ValueError, match="root"):
        post.sample(root="svd")


def test_distribution_protocol():
    from cmlearn.core.distributions import Distribution

    assert isinstance(preset("spiral"), Distribution)
    assert isinstance(EmpiricalDistribution(torch.zeros(3, 2)), Distribution)
    assert not isinstance(torch.zeros(3), Distribution)
