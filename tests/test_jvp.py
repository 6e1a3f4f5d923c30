"""The one df/dt helper (cmlearn.core.jvp): forward-mode jvp against its finite-difference twin, float64."""

import pytest
import torch

from cmlearn.core.jvp import total_derivative, total_derivative_fd
from cmlearn.core.pfode import drift
from cmlearn.data.toys2d import preset
from cmlearn.nets.mlp import MLP


def _points(t: float, n: int = 256, seed: int = 0):
    dist = preset("eight_gaussians")
    g = torch.Generator().manual_seed(seed)
    x = dist.sample(n, generator=g) + t * torch.randn(n, 2, dtype=torch.float64, generator=g)
    return dist, x, torch.full((n,), t, dtype=torch.float64)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("t", [0.05, 0.5, 3.0])
def test_jvp_matches_finite_difference_on_exact_mixture(t):
    """d/dt D(x_t, t) along the exact-score PF ODE: jvp and central differences agree to < 1e-6 (relative)."""
    dist, x, tt = _points(t)
    v = drift(x, tt, denoiser=dist.denoiser)
    f, df = total_derivative(dist.denoiser, x, tt, v)
    f_fd, df_fd = total_derivative_fd(dist.denoiser, x, tt, v)
    assert torch.equal(f, f_fd)
    assert _rel(df, df_fd) < 1e-6
    assert float(df.norm()) > 1e-3  # a derivative that is not trivially zero


def test_jvp_sees_the_forward_pass_dropout_mask():
    """With dropout on, f from jvp is a plain forward pass at the same seed, and the FD twin (three passes, one
    mask) matches jvp; passes with different masks would not."""
    dist, x, tt = _points(0.5, n=128)
    v = drift(x, tt, denoiser=dist.denoiser)
    net = MLP(2, width=32, depth=2, dropout=0.5).double().train()
    torch.manual_seed(1)
    f, df = total_derivative(net, x, tt, v)
    torch.manual_seed(1)
    f_fd, df_fd = total_derivative_fd(net, x, tt, v)
    torch.manual_seed(1)
    plain = net(x, tt)
    assert torch.equal(f, plain) and torch.equal(f, f_fd)
    assert _rel(df, df_fd) < 1e-6
    other = net(x, tt)  # the next mask
    assert float((other - plain).abs().max()) > 1e-3
    h = 1e-5
    torch.manual_seed(2)
    up = net(x + h * v, tt + h)
    torch.manual_seed(3)
    down = net(x - h * v, tt - h)
    assert _rel((up - down) / (2 * h), df) > 1.0  # mismatched masks: the "derivative" is noise / h


def test_jvp_passes_parameter_gradients_and_stops_them_under_no_grad():
    _, x, tt = _points(1.0, n=16)
    net = MLP(2, width=16, depth=1).double()
    v = torch.randn_like(x)
    f, df = total_derivative(net, x, tt, v)
    (f.sum() + df.sum()).backward()
    assert net.body[0].weight.grad is not None and float(net.body[0].weight.grad.norm()) > 0
    with torch.no_grad():
        f, df = total_derivative(net, x, tt, v)
    assert not f.requires_grad and not df.requires_grad


def test_bad_input_is_refused():
    _, x, tt = _points(1.0, n=4)
    with pytest.raises(ValueError, match="dx_dt must have"):
        total_derivative(lambda a, b: a, x, tt, x[:, :1])
    with pytest.raises(ValueError, match="h must be > 0"):
        total_derivative_fd(lambda a, b: a, x, tt, x, h=0.0)
