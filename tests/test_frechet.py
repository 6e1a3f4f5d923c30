import numpy as np
import pytest
import scipy.linalg
import torch

from cmlearn.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_features


def scipy_reference(mu1, s1, mu2, s2):
    """The classic FID formula with scipy.linalg.sqrtm (as in pytorch-fid, without the eps retry)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d + (0 if rank else 0.1) * np.eye(d)


@pytest.mark.parametrize("d", [1, 5, 32])
def test_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    for _ in range(3):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = random_cov(rng, d), random_cov(rng, d)
        ref = scipy_reference(mu1, s1, mu2, s2)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8, abs=1e-9)


def test_singular_covariances_match_scipy():
    rng = np.random.default_rng(0)
    d = 16
    s1, s2 = random_cov(rng, d, rank=6), random_cov(rng, d, rank=10)
    mu = np.zeros(d)
    ref = scipy_reference(mu, s1, mu, s2)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_diagonal_closed_form():
    rng = np.random.default_rng(1)
    d = 10
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_zero_for_identical_statistics_and_symmetric():
    rng = np.random.default_rng(2)
    f = rng.standard_normal((500, 20)) @ rng.standard_normal((20, 20))
    mu, s = feature_statistics(f)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    g = rng.standard_normal((400, 20))
    fg, gf = frechet_distance_from_features(f, g), frechet_distance_from_features(g, f)
    assert fg == pytest.approx(gf, rel=1e-9)


def test_feature_statistics_and_torch_inputs():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((300, 4))
    mu, s = feature_statistics(torch.from_numpy(f).float())
    assert mu.dtype == np.float64 and s.shape == (4, 4)
    assert np.allclose(mu, f.mean(0), atol=1e-6) and np.allclose(s, np.cov(f.T), atol=1e-6)
    # samples of two Gaussians: the estimate approaches the closed form (shift of 1 in each of 4 dims -> 4)
    g = rng.standard_normal((20000, 4)) + 1.0
    h = rng.standard_normal((20000, 4))
    assert frechet_distance_from_features(g, torch.from_numpy(h)) == pytest.approx(4.0, rel=0.05)


def test_shape_mismatch_and_bad_input():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="means"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(mu, s, mu, np.eye(4))
    with pytest.raises(ValueError, match="features"):
        frechet_distance_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="n >= 2"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu, s, mu, np.full((3, 3), np.nan))
