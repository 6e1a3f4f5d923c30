import numpy as np
import ot
import pytest
import torch

from cmlearn.data.toys2d import preset
from cmlearn.metrics import energy_distance, mixture_nll, sliced_wasserstein


def test_sliced_wasserstein_matches_pot():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 2, dtype=torch.float64, generator=g)
    b = torch.randn(3000, 2, dtype=torch.float64, generator=g) * 1.3 + 0.2
    ref = ot.sliced_wasserstein_distance(a.numpy(), b.numpy(), n_projections=3000, seed=1)
    assert sliced_wasserstein(a, b, n_projections=3000) == pytest.approx(ref, rel=0.03)
    assert sliced_wasserstein(a[:1000], b, n_projections=3000) == pytest.approx(ref, rel=0.08)
    assert sliced_wasserstein(a, a) == 0.0


def test_distances_detect_difference():
    gmm = preset("eight_gaussians")
    g = torch.Generator().manual_seed(0)
    a, b = gmm.sample(4000, generator=g), gmm.sample(4000, generator=g)
    bad = preset("two_moons").sample(4000, generator=g)
    assert sliced_wasserstein(a, b) * 5 < sliced_wasserstein(a, bad)
    assert energy_distance(a, b) * 20 < energy_distance(a, bad)
    assert mixture_nll(a, gmm) < mixture_nll(bad, gmm)
    # one dimension: energy distance equals scipy's formula 2*E|X-Y| - ... (scipy returns its square root)
    from scipy.stats import energy_distance as sp_ed
    x1, y1 = a[:500, :1], bad[:500, :1]
    assert energy_distance(x1, y1) == pytest.approx(sp_ed(x1[:, 0].numpy(), y1[:, 0].numpy()) ** 2, rel=1e-9)


def test_bad_samples():
    with pytest.raises(ValueError, match="NaN"):
        sliced_wasserstein(np.array([[np.nan, 0.0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="same dimension"):
        energy_distance(np.zeros((3, 2)), np.zeros((3, 3)))
