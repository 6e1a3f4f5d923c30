"""Appendix B (Theorems 3, 5, 6): scaled discrete CD/CT gradients converge to the continuous ones at order ~1."""

import pytest
import torch

from cmlearn.data.toys2d import preset
from cmlearn.runtime import pick
from cmlearn.theory.appendix_b import continuous_gradient, continuous_limit_check, discrete_gradient, tau
from cmlearn.theory.theorem2 import fixed_network


def test_discrete_gradients_converge_to_the_continuous_objectives():
    """(N - 1) grad L^N -> grad L^infinity for CD (Thm 5) and CT (Thm 6), (N - 1)^2 L_CD^N -> L_CD^infinity
    (Thm 3); the gaps fall like 1 / N (full mode: orders 1.05, 1.06 and 1.03 at M = 20000)."""
    res = continuous_limit_check(fixed_network(), preset("eight_gaussians"), Ns=(40, 80, 160, 320),
                                 M=pick(20_000, 5_000))
    for kind in ("cd", "ct"):
        assert 0.7 < res[kind]["order"] < 1.4, (kind, res[kind])
        assert res[kind]["grad_gap"][-1] < 0.03
    assert 0.8 < res["cd"]["value_order"] < 1.3 and res["cd"]["value_gap"][-1] < 0.03


def test_ct_without_a_score_is_not_cd_in_a_finite_batch():
    """The control: CT's discrete gradient tends to CT's continuous one, not to CD's (their gap is Lemma 1's
    zero-mean noise, which a finite batch does not average away), so the check can tell the objectives apart."""
    dist, model = preset("eight_gaussians"), fixed_network()
    g = torch.Generator().manual_seed(0)
    x = dist.sample(4000, generator=g)
    z, u = torch.randn(x.shape, generator=g, dtype=torch.float64), torch.rand(4000, generator=g, dtype=torch.float64)
    ct_N, _ = discrete_gradient(model, dist, 320, kind="ct", x=x, z=z, u=u)
    cd_inf, _ = continuous_gradient(model, dist, kind="cd", x=x, z=z, u=u)
    ct_inf, _ = continuous_gradient(model, dist, kind="ct", x=x, z=z, u=u)
    assert (ct_N - ct_inf).norm() < 0.2 * (ct_N - cd_inf).norm()


def test_tau_is_the_karras_grid_and_bad_kind_is_refused():
    from cmlearn.core.schedules import karras_sigmas

    t, _ = tau(torch.linspace(0, 1, 18, dtype=torch.float64))
    assert torch.allclose(t, karras_sigmas(18).double(), rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        discrete_gradient(fixed_network(), preset("eight_gaussians"), 10, kind="x", x=torch.zeros(2, 2),
                          z=torch.zeros(2, 2), u=torch.zeros(2, dtype=torch.float64))
