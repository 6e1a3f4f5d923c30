"""Exact conditionals of 2D mixtures and the zero-shot editing distance helper."""

import pytest
import torch

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.schedules import EPS, T_MAX
from cmlearn.data.toys2d import preset
from cmlearn.theory.toy_editing import conditional_sample, editing_distance, wasserstein_1d


def test_conditional_of_a_single_gaussian_matches_formula():
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)
    g = GaussianMixture(torch.tensor([[1.0, -1.0]]), cov[None])
    x = conditional_sample(g, torch.full((200_000,), 2.0), generator=torch.Generator().manual_seed(0))
    assert torch.all(x[:, 0] == 2.0)
    # mean -1 + 0.6 (2 - 1) = -0.4, variance 2 - 0.36 = 1.64
    assert float(x[:, 1].mean()) == pytest.approx(-0.4, abs=0.01)
    assert float(x[:, 1].var()) == pytest.approx(1.64, rel=0.02)
    y = conditional_sample(g, torch.full((200_000,), 0.0), known=1, generator=torch.Generator().manual_seed(0))
    assert float(y[:, 0].mean()) == pytest.approx(1.0 + 0.6 / 2.0, abs=0.01)


def test_conditional_agrees_with_joint_samples():
    dist = preset("eight_gaussians")
    gen = torch.Generator().manual_seed(1)
    joint = dist.sample(400_000, generator=gen)
    sel = joint[(joint[:, 0] - 0.0).abs() < 0.01, 1]  # rejection: x0 close to 0
    exact = conditional_sample(dist, torch.zeros(len(sel)), generator=gen)[:, 1]
    assert len(sel) > 1000
    assert wasserstein_1d(sel, exact) < 0.03
    # bimodal at x0 = 0: the two Gaussians at the top and the bottom of the circle
    assert float((exact > 0).double().mean()) == pytest.approx(0.5, abs=0.05)


def test_errors_and_distance_helper_runs():
    dist = preset("eight_gaussians")
    with pytest.raises(ValueError, match="known"):
        conditional_sample(dist, torch.zeros(3), known=2)
    with pytest.raises(ValueError, match="equal size"):
        wasserstein_1d(torch.zeros(2), torch.zeros(3))

    class Denoise(torch.nn.Module):  # the exact posterior mean as a (poor) one-call "consistency model"
        eps, T = EPS, T_MAX

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            return dist.denoiser(x.double(), float(t)).float()

    res = editing_distance(Denoise(), dist, steps=(1, 8), n_conditions=4, n_per=200)
    assert res["steps"] == [1, 8] and len(res["distance"]) == 2 and res["floor"] > 0
    assert res["distance"][1] < res["distance"][0]

    import matplotlib

    matplotlib.use("Agg")
    from cmlearn.course.theory_plots import plot_conditionals

    ax = plot_conditionals(Denoise(), dist, [0.0, 0.3], steps=2, n_per=200)
    assert len(ax) == 2 and ax[0].get_title() == "x0 = 0.00"


def test_conditional_sample_is_the_mixture_condition():
    """conditional_sample draws from GaussianMixture.condition, the known coordinates in the order given."""
    g = torch.Generator().manual_seed(3)
    A = torch.randn(2, 3, 3, dtype=torch.float64, generator=g)
    dist = GaussianMixture(torch.randn(2, 3, dtype=torch.float64, generator=g),
                           A @ A.transpose(1, 2) * 0.1 + 0.05 * torch.eye(3, dtype=torch.float64))
    v = torch.tensor([[0.5, -1.0]], dtype=torch.float64).expand(100_000, 2)
    x = conditional_sample(dist, v, known=[2, 0], generator=torch.Generator().manual_seed(4))
    assert torch.all(x[:, 2] == 0.5) and torch.all(x[:, 0] == -1.0)
    mix = dist.condition([2, 0], v[:1])
    assert float(x[:, 1].mean()) == pytest.approx(float(mix.mean()[0, 0]), abs=0.01)
