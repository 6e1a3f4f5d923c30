import math

import pytest
import torch
from torch import nn

from cmlearn.core.losses import CDLoss, CTLoss, EDMLoss, ICTLoss, l1, l2, make_distance, pseudo_huber
from cmlearn.core.parameterization import ConsistencyFunction, Denoiser
from cmlearn.core.pfode import heun_step
from cmlearn.core.schedules import karras_sigmas
from cmlearn.data.toys2d import preset
from cmlearn.nets.mlp import MLP
from cmlearn.train.loop import make_loss
from cmlearn.train.presets import get_preset


def test_distances():
    x, y = torch.zeros(3, 4), torch.ones(3, 4)
    assert torch.allclose(l2(x, y), torch.ones(3)) and torch.allclose(l1(x, 2 * y), 2 * torch.ones(3))
    c = 0.00054 * 2  # sqrt(dim) = 2
    assert torch.allclose(pseudo_huber(x, y), torch.full((3,), math.sqrt(4 + c**2) - c))
    # whole-sample, not per pixel: differs from the per-pixel sum
    per_pixel = (torch.sqrt((x - y) ** 2 + c**2) - c).sum(1)
    assert not torch.allclose(pseudo_huber(x, y), per_pixel)
    with pytest.raises(ValueError, match="'l3'"):
        make_distance("l3")
    # a chosen c (toy presets): sqrt(||x - y||^2 + c^2) - c with that c; refused for another distance
    assert torch.allclose(make_distance("pseudo_huber", huber_c=0.3)(x, y), torch.full((3,), math.sqrt(4.09) - 0.3))
    with pytest.raises(ValueError, match="huber_c=0.3.*'l2'"):
        make_distance("l2", huber_c=0.3)


def test_huber_c_config():
    from cmlearn.train.cache import config_key
    from cmlearn.train.config import TrainConfig
    from cmlearn.train.loop import make_loss

    base = TrainConfig(kind="ict", distance="pseudo_huber", weighting="ict")
    loss = make_loss(base.override({"huber_c": "0.3"}))
    x, y = torch.zeros(2, 2), torch.ones(2, 2)
    assert torch.allclose(loss.d(x, y), torch.full((2,), math.sqrt(2.09) - 0.3))
    assert config_key(base.override({"huber_c": "0.3"})) != config_key(base)
    assert config_key(base.override({"huber_c": "0.0"})) == config_key(base)  # added key: old hashes kept
    with pytest.raises(ValueError, match="huber_c=0.3.*distance='l2'"):
        TrainConfig(kind="ct", distance="l2", huber_c=0.3)


class Recorder(nn.Module):
    """Dropout net that records its masks."""

    def __init__(self):
        super().__init__()
        self.masks = []
        self.lin = nn.Linear(2, 2)

    def forward(self, x, c):
        m = (torch.rand_like(x) > 0.5).float()
        self.masks.append(m)
        return self.lin(x) * m


def test_online_and_target_share_dropout_randomness():
    net = Recorder()
    f = ConsistencyFunction(net)
    loss = CTLoss(K=100, N=10)
    x0 = torch.randn(64, 2)
    loss(f, f, x0, k=0, generator=torch.Generator().manual_seed(0))
    assert len(net.masks) == 2 and torch.equal(net.masks[0], net.masks[1])


def test_cd_loss_uses_teacher_heun_step():
    g = preset("eight_gaussians")

    def teacher(x, t):
        return g.denoiser(x.double(), t.double()).float()

    seen = {}

    class Spy(nn.Module):
        def forward(self, x, t):
            seen.setdefault("calls", []).append((x.clone(), t.clone()))
            return x

    loss = CDLoss(teacher, N=5, solver="heun")
    x0 = torch.randn(16, 2)
    loss(Spy(), Spy(), x0, generator=torch.Generator().manual_seed(0))
    (x_next, t_next), (x_cur, t_cur) = seen["calls"]
    ts = karras_sigmas(5).float()
    assert all(float(t) in ts.tolist() for t in t_next)
    idx = torch.tensor([ts.tolist().index(float(t)) for t in t_next])
    assert torch.allclose(t_cur, ts[idx - 1])
    assert torch.allclose(x_cur, heun_step(x_next, t_next, t_cur, denoiser=teacher), atol=1e-6)


def test_ct_uses_same_noise_and_ict_weighting():
    calls = []

    class Spy(nn.Module):
        def forward(self, x, t):
            calls.append((x, t))
            return x

    x0 = torch.randn(32, 2)
    CTLoss(K=10, N=6)(Spy(), Spy(), x0, generator=torch.Generator().manual_seed(0))
    (xa, ta), (xb, tb) = calls
    za, zb = (xa - x0) / ta[:, None], (xb - x0) / tb[:, None]
    assert torch.allclose(za, zb, atol=1e-4)
    calls.clear()
    out = ICTLoss(K=10, N=6)(Spy(), Spy(), x0, generator=torch.Generator().manual_seed(0))
    (xa, ta), (xb, tb) = calls
    want = pseudo_huber(xa, xb) / (ta - tb)
    assert torch.allclose(out, want)


def test_edm_training_approaches_exact_denoiser():
    torch.manual_seed(0)
    D = Denoiser(MLP(2, width=64, depth=2))
    opt = torch.optim.Adam(D.parameters(), lr=3e-3)
    g = preset("two_moons")
    gen = torch.Generator().manual_seed(0)
    x0 = g.sample(2000, generator=gen)
    xt = (x0 + 0.5 * torch.randn(x0.shape, dtype=torch.float64, generator=gen))
    exact = g.denoiser(xt, 0.5)

    def err():
        with torch.no_grad():
            return (D(xt.float(), 0.5).double() - exact).norm(dim=1).mean().item()

    before = err()
    loss_fn = EDMLoss()
    for _ in range(300):
        loss = loss_fn(D, D, g.sample(256, generator=gen).float(), generator=gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert err() < 0.7 * before


def test_bad_loss_config():
    with pytest.raises(ValueError, match="N=1"):
        CDLoss(lambda x, t: x, N=1)
    with pytest.raises(ValueError, match="'rk4'"):
        CDLoss(lambda x, t: x, solver="rk4")
    with pytest.raises(ValueError, match="eps=80"):
        CDLoss(lambda x, t: x, eps=80.0)


def test_ct_stable_target_is_an_euler_step_of_the_batch_score():
    """stable_target=True: where t is tiny the target's point is plain CT's x + t_n z; where t is large it is close
    to one Euler step of the exact score from x + t_{n+1} z (measured on 2000 eight-Gaussian points: mean distance
    0.006 at t = 20 -> 10 against plain CT's 5.4), so far less noisy; the online point is unchanged."""
    dist = preset("eight_gaussians")
    g = torch.Generator().manual_seed(0)
    x0 = dist.sample(2000, generator=g).double()
    plain, stable = CTLoss(K=10, N=6), CTLoss(K=10, N=6, stable_target=True)
    for t_next, t_cur in ((1e-4, 5e-5), (1.0, 0.5), (20.0, 10.0)):
        tn, tc = torch.full((2000,), t_next, dtype=torch.float64), torch.full((2000,), t_cur, dtype=torch.float64)
        a_next, a_cur = plain.pair(x0, tn, tc, torch.Generator().manual_seed(1))
        b_next, b_cur = stable.pair(x0, tn, tc, torch.Generator().manual_seed(1))
        assert torch.equal(a_next, b_next)
        euler = b_next + (t_cur - t_next) * (b_next - dist.denoiser(b_next, tn)) / t_next
        err_stable = float((b_cur - euler).norm(dim=1).mean())
        err_plain = float((a_cur - euler).norm(dim=1).mean())
        if t_next < 1e-3:
            # only points with a neighbour within a few t in the batch move, and by less than t
            moved = (a_cur - b_cur).norm(dim=1)
            assert float(moved.max()) < t_next and int((moved > 1e-12).sum()) < 0.02 * len(moved)
        else:
            assert err_stable < 0.2 * err_plain, (t_next, err_stable, err_plain)
    cfg = get_preset("toy-ct").override({"stable_target": True})
    ict = get_preset("toy-ict").override(["stable_target=true"])
    assert make_loss(cfg).stable_target and make_loss(ict).stable_target
    with pytest.raises(ValueError, match="stable_target"):
        get_preset("toy-cd").override({"stable_target": True})
    for small in ({"batch_size": 1}, {"batch_size": 64, "grad_accum": 64}, {"micro_batch": 1}):
        with pytest.raises(ValueError, match="leave 1: the estimate would be the point itself"):
            get_preset("toy-ct").override({"stable_target": True, **small})
    with pytest.raises(ValueError, match=r"cannot parse 'yes please' as bool \(use true / false"):
        get_preset("toy-ct").override(["stable_target=yes please"])


def test_stable_target_in_row_blocks_with_a_weight_floor_is_the_plain_softmax():
    """The reference path computes the (B, B + M) weights a block of rows at a time, with each logit raised to at
    least its row's max - 75 (no subnormal floats); at 3 blocks and snr up to 1000 (most weights underflow) it is the
    plain softmax written out to float64 rounding, in float32 to float32's."""
    from cmlearn.core import stable_target

    g = torch.Generator().manual_seed(3)
    b, m = 300, 2000
    rows = stable_target._CHUNK // (b + m)
    assert b > 2 * rows  # three blocks at least
    x0, ref = torch.randn(b, 2, generator=g, dtype=torch.float64), torch.randn(m, 2, generator=g, dtype=torch.float64)
    z = torch.randn(b, 2, generator=g, dtype=torch.float64)
    snr = 10 ** (torch.rand(b, generator=g, dtype=torch.float64) * 5 - 2)  # 0.01 ... 1000
    xs = torch.cat([x0, ref])
    y = x0 + z / snr[:, None]
    w = torch.softmax(-((y[:, None] - xs[None]) ** 2).sum(-1) * snr[:, None] ** 2 / 2, dim=1)
    assert (w < 1e-38).float().mean() > 0.3  # many weights would be subnormal in float32
    got = stable_target.batch_posterior_mean(x0, z, snr, reference=ref)
    assert torch.allclose(got, w @ xs, atol=1e-9)
    got32 = stable_target.batch_posterior_mean(x0.float(), z.float(), snr.float(), reference=ref.float())
    assert torch.allclose(got32.double(), w @ xs, atol=1e-3), float((got32.double() - w @ xs).abs().max())


def test_stable_target_reference_points_join_the_posterior_mean():
    """``reference``: M more data points in the stable target's posterior mean. It equals the softmax of
    -||y_i - x_j||^2 / (2 t^2) over batch and reference written out directly; with 4096 more points the CT target at
    t = 1 -> 0.5 on eight Gaussians is closer to the exact Euler step than with the batch of 64 alone."""
    from cmlearn.core.stable_target import batch_posterior_mean

    dist = preset("eight_gaussians")
    g = torch.Generator().manual_seed(0)
    x0, ref = dist.sample(64, generator=g), dist.sample(500, generator=g)
    z, t = torch.randn(64, 2, generator=g, dtype=torch.float64), torch.rand(64, generator=g, dtype=torch.float64) + 0.05
    xs = torch.cat([x0, ref])
    y = x0 + t[:, None] * z
    w = torch.softmax(-((y[:, None] - xs[None]) ** 2).sum(-1) / (2 * t[:, None] ** 2), dim=1)
    assert torch.allclose(batch_posterior_mean(x0, z, 1 / t, reference=ref), w @ xs, atol=1e-9)
    assert torch.allclose(batch_posterior_mean(x0, z, 1 / t, reference=ref[:0]), batch_posterior_mean(x0, z, 1 / t))
    with pytest.raises(ValueError, match=r"shaped like x0's, \(M, 2\), got \(5, 3\)"):
        batch_posterior_mean(x0, z, 1 / t, reference=torch.zeros(5, 3))
    ct = CTLoss(K=10, N=6, stable_target=True)
    big = dist.sample(4096, generator=g)
    tn, tc = torch.full((64,), 1.0, dtype=torch.float64), torch.full((64,), 0.5, dtype=torch.float64)
    errs = []
    for reference in (None, big):
        x_next, x_cur = ct.pair(x0, tn, tc, torch.Generator().manual_seed(1), reference)
        euler = x_next + (tc - tn)[:, None] * (x_next - dist.denoiser(x_next, tn)) / tn[:, None]
        errs.append(float((x_cur - euler).norm(dim=1).mean()))
    assert errs[1] < 0.5 * errs[0], errs
    cfg = get_preset("toy-ict").override(["stable_target=true", "stable_ref=256"])
    assert cfg.stable_ref == 256
    for bad, word in (({"stable_ref": 256}, "needs stable_ref >= 0 and stable_target=true"),
                      ({"stable_target": True, "stable_ref": -1}, "stable_ref=-1")):
        with pytest.raises(ValueError, match=word):
            get_preset("toy-ct").override(bad)
    with pytest.raises(ValueError, match="stable_ref"):
        get_preset("toy-meanflow").override({"stable_ref": 8})
    with pytest.raises(ValueError, match=r"stable_ref=4096 has no effect on kind='cd'"):  # not "needs stable_target"
        get_preset("toy-cd").override({"stable_ref": 4096})
    with pytest.raises(ValueError, match="pass stable_target=false stable_ref=0"):  # toy-ict sets stable_ref itself
        get_preset("toy-ict").override({"stable_target": False})
    assert get_preset("toy-ict").override({"stable_target": False, "stable_ref": 0}).stable_ref == 0


def test_edm_stable_target_regresses_on_the_batch_posterior_mean():
    """EDMLoss(stable_target=True): the denoiser's target is the batch's (and the reference points') posterior mean
    of x0 at x0 + sigma e (STF), not x0. Checked on a denoiser that returns 0: the loss is weight * |target|^2, with
    the target written out from the noise the loss drew; at tiny sigma it is x0, at large sigma close to the mean of
    the batch and reference points. The config accepts it on kind='edm' (toy-edm below)."""
    from cmlearn.core.stable_target import batch_posterior_mean
    from cmlearn.train.presets import get_preset

    x0, ref = torch.randn(64, 2, dtype=torch.float64) + 3.0, torch.randn(512, 2, dtype=torch.float64) + 3.0
    seen = {}

    def zero(x, sigma):
        seen["x"], seen["sigma"] = x, sigma
        return torch.zeros_like(x)

    for p_mean, want_mean in ((-9.0, False), (6.0, True)):  # sigma about 1e-4, about 400
        loss_fn = EDMLoss(p_mean=p_mean, p_std=0.1, stable_target=True)
        loss = loss_fn(zero, None, x0, generator=torch.Generator().manual_seed(0), reference=ref)
        sigma = seen["sigma"]
        e = (seen["x"] - x0) / sigma[:, None]
        target = batch_posterior_mean(x0, e, 1 / sigma, reference=ref)
        weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
        assert torch.allclose(loss, weight * target.pow(2).mean(1), rtol=1e-6)
        pooled = torch.cat([x0, ref]).mean(0)
        near = (target - pooled).norm(dim=1).max() < 0.1 if want_mean else torch.allclose(target, x0, atol=1e-6)
        assert near, (p_mean, target[:3])
        plain = EDMLoss(p_mean=p_mean, p_std=0.1)(zero, None, x0, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(plain, weight * x0.pow(2).mean(1), rtol=1e-6)
    cfg = get_preset("toy-edm").override({"stable_target": True, "stable_ref": 256})
    assert (cfg.stable_target, cfg.stable_ref) == (True, 256)
