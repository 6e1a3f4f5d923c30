"""MLP.jvp, forward mode written out by hand, against torch.func.jvp of the same network (float64)."""

import pytest
import torch

from cmlearn.nets.mlp import MLP

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")  # torch.func.jvp's own


def _inputs(n_times: int, n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (n,) if n_times == 1 else (n, n_times)
    x, dx = torch.randn(n, 2, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64)
    c, dc = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
    return x, c, dx, dc


@pytest.mark.parametrize("kw", [{}, {"n_times": 2, "input_scale": 10.0}, {"depth": 2, "fourier_scale": 16.0}])
def test_jvp_equals_torch_func_jvp(kw):
    torch.manual_seed(0)
    net = MLP(2, width=32, emb_dim=16, **kw).double()
    x, c, dx, dc = _inputs(net.n_times)
    f_ref, df_ref = torch.func.jvp(net, (x, c), (dx, dc))
    f, df = net.jvp(x, c, dx, dc)
    assert torch.equal(f, net(x, c))
    torch.testing.assert_close(f, f_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(df, df_ref, rtol=1e-10, atol=1e-12)
    assert float(df.abs().max()) > 1e-3  # not a trivially zero tangent


def test_jvp_uses_the_forward_pass_dropout_mask():
    net = MLP(2, width=32, depth=3, emb_dim=16, dropout=0.5).double().train()
    x, c, dx, dc = _inputs(1)
    torch.manual_seed(3)
    plain = net(x, c)
    torch.manual_seed(3)
    f, df = net.jvp(x, c, dx, dc)
    assert torch.equal(f, plain)
    torch.manual_seed(3)
    f_ref, df_ref = torch.func.jvp(net, (x, c), (dx, dc))
    torch.testing.assert_close(df, df_ref, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        assert float((net(x, c) - plain).abs().max()) > 1e-3  # the next draw: another mask


def test_jvp_output_carries_gradients_and_its_tangent_does_not():
    net = MLP(2, width=16, depth=2, emb_dim=8).double()
    x, c, dx, dc = _inputs(1, n=8)
    f, df = net.jvp(x, c, dx, dc)
    assert f.requires_grad and not df.requires_grad
    f.pow(2).sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net(x, c).pow(2).sum().backward()
    for a, b in zip(grads, (p.grad for p in net.parameters())):
        torch.testing.assert_close(a, b)


def test_jvp_in_eval_mode_drops_nothing():
    net = MLP(2, width=32, depth=2, emb_dim=16, dropout=0.5).double().eval()
    x, c, dx, dc = _inputs(1)
    f_ref, df_ref = torch.func.jvp(net, (x, c), (dx, dc))
    f, df = net.jvp(x, c, dx, dc)
    assert torch.equal(f, f_ref)
    torch.testing.assert_close(df, df_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("order", [("sin", "cos"), ("cos", "sin")])
def test_fourier_embedding_tangent_in_either_order(order):
    from cmlearn.nets.layers import FourierEmbedding

    emb = FourierEmbedding(16, scale=4.0, order=order).double()
    c, dc = torch.linspace(-1, 1, 9, dtype=torch.float64), torch.linspace(0.5, 2, 9, dtype=torch.float64)
    e, de = emb.jvp(c, dc)
    e_ref, de_ref = torch.func.jvp(emb, (c,), (dc,))
    assert torch.equal(e, e_ref)
    torch.testing.assert_close(de, de_ref, rtol=1e-12, atol=1e-12)


def test_jvp_refuses_mismatched_tangents():
    net = MLP(2, width=8, depth=1, emb_dim=8).double()
    x, c, dx, dc = _inputs(1, n=4)
    with pytest.raises(ValueError, match="dx and dc must have"):
        net.jvp(x, c, dx[:, :1], dc)
    with pytest.raises(ValueError, match="dx and dc must have"):
        net.jvp(x, c, dx, dc[:2])


def test_meanflow_model_fast_path_equals_the_generic_one():
    from cmlearn.core.jvp import total_derivative
    from cmlearn.core.meanflow import MeanFlowModel

    torch.manual_seed(0)
    model = MeanFlowModel(MLP(2, width=32, depth=2, emb_dim=16, n_times=2, input_scale=10.0).double())
    z, t, dz, _ = _inputs(1)
    t, r = t.sigmoid(), 0.5 * t.sigmoid()
    u, du = model.total_derivative(z, r, t, dz)
    u_ref, du_ref = total_derivative(lambda zz, ts: model(zz, r, ts), z, t, dz)
    torch.testing.assert_close(u, u_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(du, du_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [{"time_input": "t"}, {"time_input": "log_tan"}, {"time_dtype": "float16"}])
def test_trigflow_fast_path_equals_the_generic_one(kw):
    from cmlearn.core.jvp import total_derivative
    from cmlearn.core.scm import TrigFlowFunction

    torch.manual_seed(0)
    model = TrigFlowFunction(MLP(2, width=32, depth=2, emb_dim=16, input_scale=10.0), **kw).double()
    x, t, dx, _ = _inputs(1)
    t = torch.cat([torch.full((4,), 1e-3, dtype=torch.float64), t[4:].sigmoid() * 1.5])  # 4 below log_tan's floor
    F, dF = model.F_jvp(x, t, dx)
    F_ref, dF_ref = total_derivative(model.F, x, t, dx)
    torch.testing.assert_close(F, F_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dF, dF_ref, rtol=1e-9, atol=1e-10)


class _Generic(torch.nn.Module):
    """The same network without ``jvp``: the losses take the generic torch.func.jvp path."""

    def __init__(self, net):
        super().__init__()
        self.inner = net

    def forward(self, *args):
        return self.inner(*args)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("kind", ["meanflow", "sct"])
def test_losses_give_the_same_value_and_gradients_either_way(kind, dropout, monkeypatch):
    from cmlearn.core.meanflow import MeanFlowLoss, MeanFlowModel
    from cmlearn.core.scm import SCMLoss, TrigFlowFunction

    torch.manual_seed(0)
    net = MLP(2, width=32, depth=2, emb_dim=16, n_times=2 if kind == "meanflow" else 1, input_scale=10.0,
              dropout=dropout).double().train()
    calls = []
    jvp = net.jvp
    monkeypatch.setattr(net, "jvp", lambda *a: calls.append(1) or jvp(*a))
    if kind == "meanflow":
        loss_fn = MeanFlowLoss(sampler="uniform", ratio=0.75, stable_target=True)
        fast, generic = MeanFlowModel(net), MeanFlowModel(_Generic(net))
    else:
        loss_fn = SCMLoss()
        fast = TrigFlowFunction(net, time_input="log_tan")
        generic = TrigFlowFunction(_Generic(net), time_input="log_tan")
        generic.weight = fast.weight
    assert hasattr(fast.net, "jvp") and not hasattr(generic.net, "jvp")  # the two paths
    x0 = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for model, n_calls in ((fast, 1), (generic, 1)):  # MLP.jvp runs once in the fast loss, never in the generic one
        torch.manual_seed(4)  # the same dropout masks both ways
        loss = loss_fn(model, None, x0, k=5, generator=torch.Generator().manual_seed(2)).mean()
        assert len(calls) == n_calls
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in net.parameters()]))
        net.zero_grad()
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-10, atol=1e-12)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
