import pytest
import torch
from torch import nn

from cmlearn.core.parameterization import ConsistencyFunction, Denoiser, c_in, c_noise, c_out, c_skip


class Wild(nn.Module):
    def forward(self, x, cn):
        return 1e3 * torch.sin(7 * x) + cn[:, None] ** 3


def test_coefficients_closed_form():
    t = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    sd, eps = 0.5, 0.002
    assert torch.allclose(c_skip(t), sd**2 / ((t - eps) ** 2 + sd**2))
    assert torch.allclose(c_out(t), sd * (t - eps) / (sd**2 + t**2) ** 0.5)
    assert torch.allclose(c_in(t), 1 / (t**2 + sd**2) ** 0.5)
    assert torch.allclose(c_noise(t), 0.25 * torch.log(t))
    assert c_skip(t)[0] == 1.0 and c_out(t)[0] == 0.0
    # large t: the skip vanishes and the output scale tends to sigma_data
    assert c_skip(t)[2] < 1e-4 and abs(c_out(t)[2] - sd) < 1e-2


def test_boundary_condition_exact_for_any_net():
    f = ConsistencyFunction(Wild(), eps=0.002)
    x = torch.randn(16, 2, dtype=torch.float64)
    assert torch.equal(f(x, 0.002), x)
    assert not torch.allclose(f(x, 1.0), x)
    # per-sample times
    t = torch.full((16,), 0.002, dtype=torch.float64)
    assert torch.equal(f(x, t), x)


def test_denoiser_has_no_eps_shift():
    D = Denoiser(Wild())
    x = torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    sd = 0.5
    F = Wild()(x / (t**2 + sd**2) ** 0.5, c_noise(t).expand(4))
    want = sd**2 / (t**2 + sd**2) * x + t * sd / (t**2 + sd**2) ** 0.5 * F
    assert torch.allclose(D(x, t), want)


def test_bad_time_shape():
    f = ConsistencyFunction(Wild())
    with pytest.raises(ValueError, match=r"\(3,\)"):
        f(torch.randn(4, 2), torch.ones(3))
