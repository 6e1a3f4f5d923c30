"""Algorithm 4 (zero-shot editing): orthogonal transforms, the known part of y kept exactly, shape checks."""

import pytest
import torch
from torch import nn

from cmlearn.core import editing
from cmlearn.core.parameterization import c_out, c_skip


class ToyF(nn.Module):
    """A consistency-function-shaped model for any tensor shape: f(x, t) = c_skip x + c_out tanh(w x)."""

    eps, T = 0.002, 80.0

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.3))
        self.calls = []

    def forward(self, x, t):
        self.calls.append(float(t))
        t = torch.as_tensor(float(t))
        return c_skip(t) * x + c_out(t) * torch.tanh(self.w * x)


TAUS = [80.0, 2.0, 0.5]


def test_orthogonal_matrices():
    for Q in (editing.colorization_matrix(), editing.patch_mean_matrix(2), editing.patch_mean_matrix(4),
              editing.orthogonal_with_first_column([0.0, 0.0, -3.0, 1.0])):
        assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[0], dtype=Q.dtype), atol=1e-12)
        assert torch.allclose(Q @ Q.T, torch.eye(Q.shape[0], dtype=Q.dtype), atol=1e-12)
    luma = torch.tensor(editing.LUMA, dtype=torch.float64)
    assert torch.allclose(editing.colorization_matrix()[:, 0], luma / luma.norm())
    assert torch.allclose(editing.patch_mean_matrix(3)[:, 0], torch.full((9,), 1 / 3, dtype=torch.float64))


def test_transforms_invert():
    x = torch.randn(2, 3, 8, 8)
    for A, A_inv in (editing.channel_transform(editing.colorization_matrix()),
                     editing.patch_transform(editing.patch_mean_matrix(2), 2)):
        assert torch.allclose(A_inv(A(x)), x, atol=1e-5)
        assert torch.allclose(A(x).norm(), x.norm(), atol=1e-3)  # orthogonal: norm preserved


def test_inpaint_keeps_known_points_and_images():
    m = ToyF()
    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 2)
    out = editing.inpaint(m, y, torch.tensor([0.0, 1.0]), TAUS, generator=g)
    assert out.shape == y.shape and torch.equal(out[:, 0], y[:, 0])
    assert not torch.allclose(out[:, 1], y[:, 1])
    assert m.calls == TAUS
    img = torch.randn(3, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1
    out = editing.inpaint(m, img, mask, TAUS, generator=g)
    assert torch.equal(out[..., :4], img[..., :4])


def test_matrix_A_keeps_known_coordinates():
    m = ToyF()
    y = torch.randn(20, 3)
    Q = editing.orthogonal_with_first_column([1.0, 2.0, 3.0]).float()
    A = Q.T
    out = editing.edit(m, y, torch.tensor([0.0, 1.0, 1.0]), TAUS, A=A, generator=torch.Generator().manual_seed(1))
    assert torch.allclose((out @ A.T)[:, 0], (y @ A.T)[:, 0], atol=1e-5)


def test_colorize_keeps_luma():
    m = ToyF()
    gray = torch.rand(2, 1, 4, 4)
    out = editing.colorize(m, gray, TAUS, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 4, 4)
    w = torch.tensor(editing.LUMA).view(1, 3, 1, 1)
    assert torch.allclose((out * w).sum(1), (gray.expand(-1, 3, -1, -1) * w).sum(1), atol=1e-5)


def test_super_resolve_keeps_patch_means():
    m = ToyF()
    low = torch.randn(2, 3, 4, 4)
    out = editing.super_resolve(m, low, 2, TAUS, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 8, 8)
    assert torch.allclose(torch.nn.functional.avg_pool2d(out, 2), low, atol=1e-5)
    assert out.std() > 0 and not torch.allclose(out, low.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_stroke_denoise_interpolate():
    m = ToyF()
    s = torch.randn(4, 1, 8, 8)
    assert editing.stroke_guided(m, s, [2.0, 0.5]).shape == s.shape
    m.calls.clear()
    assert editing.denoise(m, s, 0.7).shape == s.shape and m.calls == [0.7]
    m.calls.clear()
    editing.denoise(m, s, 0.7, [0.3])
    assert m.calls == [0.7, 0.3]
    z0, z1 = torch.randn(2, 5), torch.randn(2, 5)
    assert torch.allclose(editing.slerp(z0, z1, 0.0), z0, atol=1e-6)
    assert torch.allclose(editing.slerp(z0, z1, 1.0), z1, atol=1e-5)
    assert torch.allclose(editing.slerp(z0, z0, 0.3), z0, atol=1e-6)
    out = editing.interpolate(m, torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4), [0.0, 0.5, 1.0])
    assert out.shape == (3, 2, 1, 4, 4)


def test_errors_name_bad_values():
    m = ToyF()
    y = torch.randn(5, 2)
    with pytest.raises(ValueError, match="decreasing"):
        editing.edit(m, y, torch.tensor([0.0, 1.0]), [1.0, 2.0])
    with pytest.raises(ValueError, match="omega"):
        editing.edit(m, y, torch.ones(3), [1.0])
    with pytest.raises(ValueError, match="binary"):
        editing.edit(m, y, torch.tensor([0.5, 1.0]), [1.0])
    with pytest.raises(ValueError, match="square matrix of size 2"):
        editing.edit(m, y, torch.ones(2), [1.0], A=torch.eye(3))
    with pytest.raises(ValueError, match="A_inv"):
        editing.edit(m, y, torch.ones(2), [1.0], A=lambda x: x)
    with pytest.raises(ValueError, match="divisible"):
        editing.patch_transform(editing.patch_mean_matrix(2), 2)[0](torch.randn(1, 1, 3, 3))
    with pytest.raises(ValueError, match="y_gray"):
        editing.colorize(m, torch.randn(1, 2, 4, 4), [1.0])
