"""Easy Consistency Tuning (cmlearn.core.ect): the r(t) schedule, lognormal t, the loss, and the presets."""

import math

import pytest
import torch
from torch import nn

from cmlearn.core.ect import ECTLoss, ect_r, ect_stage, truncated_lognormal
from cmlearn.core.losses import pseudo_huber
from cmlearn.core.parameterization import ConsistencyFunction
from cmlearn.nets.mlp import MLP


def test_r_of_t_shrinks_dt_by_q_per_stage():
    t = torch.logspace(-2, math.log10(80), 50, dtype=torch.float64)
    r0 = ect_r(t, 0)
    assert (r0 >= 0).all() and (r0 <= t).all()
    assert (r0[t < 0.5] == 0).all()  # stage 0, small t: 1 - (1 + 8 sigmoid(-t)) / 2 < 0, so r = 0 (denoising)
    assert torch.allclose(r0[-1] / t[-1], torch.tensor(0.5, dtype=torch.float64), atol=1e-6)  # large t: 1 - 1/q
    for a in range(1, 7):  # where r > 0 at both stages, dt / t = n(t) / q^(a + 1): halves with each stage
        ra, rb = ect_r(t, a), ect_r(t, a + 1)
        ok = (ra > 0) & (rb > 0)
        assert ok.sum() > 10
        assert torch.allclose((t - rb)[ok] / (t - ra)[ok], torch.tensor(0.5, dtype=torch.float64))
    n = 1 + 8 * torch.sigmoid(-t)
    assert torch.allclose(ect_r(t, 0, q=256.0), t * (1 - n / 256))  # the one-hour run's q = 256
    assert ect_stage(0, 125) == 0 and ect_stage(124, 125) == 0 and ect_stage(125, 125) == 1
    with pytest.raises(ValueError):
        ect_stage(3, 0)
    # short first stages (digits-ect: 4 of 60, then 190 each): boundaries at 60, 120, 180, 240, 430, 620, 810
    stages = [ect_stage(k, 190, short_stages=4, short_steps=60) for k in range(1000)]
    assert [k for k in range(1, 1000) if stages[k] != stages[k - 1]] == [60, 120, 180, 240, 430, 620, 810]
    assert stages[0] == 0 and stages[-1] == 7
    with pytest.raises(ValueError, match="short_steps=0"):
        ect_stage(3, 10, short_stages=2, short_steps=0)


def test_truncated_lognormal_t():
    g = torch.Generator().manual_seed(0)
    t = truncated_lognormal(200_000, lo=0.002, hi=80.0, generator=g)
    assert t.min() >= 0.002 and t.max() <= 80.0
    lt = t.log()
    assert abs(lt.mean() - (-1.1)) < 0.03 and 1.9 < lt.std() < 2.0  # tails cut at -2.6 and +2.7 sigma
    wide = truncated_lognormal(200_000, lo=1e-12, hi=1e12, generator=g).log()
    assert abs(wide.mean() + 1.1) < 0.02 and abs(wide.std() - 2.0) < 0.02


class Recorder(nn.Module):
    """A consistency function that records its inputs."""

    def __init__(self):
        super().__init__()
        self.inner = ConsistencyFunction(MLP(2, width=32, depth=2, emb_dim=16))
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), torch.as_tensor(t).detach().clone()))
        return self.inner(x, t)


def test_loss_same_noise_weighting_and_boundary():
    torch.manual_seed(0)
    model, x0 = Recorder(), torch.randn(256, 2) * 0.5
    loss_fn = ECTLoss(stage_steps=10, distance="pseudo_huber")
    assert loss_fn.mu == 0.0 and loss_fn.target_decay(5) == 0.0 and loss_fn.num_steps(25) == 8  # q^(a+1), a = 2
    loss = loss_fn(model, model, x0, k=0, generator=torch.Generator().manual_seed(1))
    (x_t, t), (x_r, r) = model.calls
    assert loss.shape == (256,) and torch.isfinite(loss).all()
    assert (r >= 0.002).all() and (r <= t).all() and (r == 0.002).any()
    assert torch.allclose((x_t - x0) / t[:, None], (x_r - x0) / r[:, None], atol=1e-4)  # the same z at t and r
    t2, r2 = loss_fn.times(256, 0, torch.Generator().manual_seed(1))
    assert torch.allclose(t, t2.float()) and torch.allclose(r, r2.float())
    with torch.no_grad():
        want = pseudo_huber(model.inner(x_t, t), model.inner(x_r, r)) / (t - r).clamp(min=1e-12)
    assert torch.allclose(loss.detach(), want, rtol=1e-4, atol=1e-6)
    at_eps = r == 0.002  # r clamped at eps: the target is x_eps = x + eps z itself (f(x, eps) = x)
    assert torch.allclose(model.inner(x_r[at_eps], r[at_eps]), x_r[at_eps])


def test_weightings_divide_by_the_stage_factor_or_use_snr():
    torch.manual_seed(0)
    model, x0 = Recorder(), torch.randn(64, 2) * 0.5
    losses = {}
    for w in ("dt", "dt_stage", "snr"):
        model.calls.clear()
        loss_fn = ECTLoss(stage_steps=10, weighting=w)
        losses[w] = loss_fn(model, model, x0, k=25, generator=torch.Generator().manual_seed(1)).detach()
    (_, t), (_, r) = model.calls
    d = losses["dt"] * (t - r)  # the distance itself
    torch.testing.assert_close(losses["dt_stage"], losses["dt"] / 8)  # stage a = 2 at k = 25: q^(a+1) = 8
    torch.testing.assert_close(losses["snr"], d * (t**2 + 0.25) / (t * 0.5) ** 2, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="weighting must be one of"):
        ECTLoss(stage_steps=10, weighting="edm")


def test_stable_target_moves_only_the_target_point():
    """stable_target=True: x_t is unchanged and x_r = x + r z - (1 - r / t) (x - xbar), xbar the batch's posterior
    mean of x given x_t (cmlearn.core.stable_target)."""
    from cmlearn.core.stable_target import batch_posterior_mean

    x0 = torch.randn(256, 2) * 0.5
    plain, stable = Recorder(), Recorder()
    ECTLoss(stage_steps=10)(plain, plain, x0, generator=torch.Generator().manual_seed(1))
    ECTLoss(stage_steps=10, stable_target=True)(stable, stable, x0, generator=torch.Generator().manual_seed(1))
    (xa_t, t), (xa_r, r) = plain.calls
    (xb_t, _), (xb_r, _) = stable.calls
    assert torch.equal(xa_t, xb_t) and not torch.allclose(xa_r, xb_r)
    z = (xa_t - x0) / t[:, None]
    want = xa_r - (1 - r / t)[:, None] * (x0 - batch_posterior_mean(x0, z, 1 / t))
    assert torch.allclose(xb_r, want, atol=1e-5)


def test_stable_target_reference_joins_the_posterior_mean():
    """stable_ref: ``reference`` (M, ...) points join the batch in xbar (as CTLoss's), and the config accepts
    stable_ref on kind='ect' (the loop passing them: test_toy_ect_trains_from_a_teacher_run_through_the_cli, whose
    preset sets stable_ref=4096)."""
    from cmlearn.core.stable_target import batch_posterior_mean
    from cmlearn.train.presets import get_preset

    x0, ref = torch.randn(64, 2) * 0.5, torch.randn(512, 2) * 0.5
    without, with_ref = Recorder(), Recorder()
    ECTLoss(stage_steps=10, stable_target=True)(without, without, x0, generator=torch.Generator().manual_seed(2))
    ECTLoss(stage_steps=10, stable_target=True)(with_ref, with_ref, x0, generator=torch.Generator().manual_seed(2),
                                                reference=ref)
    (x_t, t), (xa_r, r) = without.calls
    (_, _), (xb_r, _) = with_ref.calls
    z = (x_t - x0) / t[:, None]
    want = x0 + r[:, None] * z - (1 - r / t)[:, None] * (x0 - batch_posterior_mean(x0, z, 1 / t, reference=ref))
    assert torch.allclose(xb_r, want, atol=1e-5) and not torch.allclose(xa_r, xb_r, atol=1e-3)
    assert get_preset("toy-ect").override({"stable_target": True, "stable_ref": 256}).stable_ref == 256


def test_only_the_online_pass_carries_gradient():
    torch.manual_seed(0)
    f = ConsistencyFunction(MLP(2, width=32, depth=2, emb_dim=16))
    loss = ECTLoss(stage_steps=1)(f, f, torch.randn(64, 2), k=3, generator=torch.Generator().manual_seed(0)).mean()
    loss.backward()
    assert all(p.grad is not None for p in f.parameters())
    with pytest.raises(ValueError):
        ECTLoss(stage_steps=5, q=1.0)


def test_ect_presets_and_config_keys():
    from cmlearn.train.loop import make_loss
    from cmlearn.train.presets import get_preset

    toy, digits, cifar = get_preset("toy-ect"), get_preset("digits-ect"), get_preset("cifar10-ect")
    assert toy.kind == digits.kind == cifar.kind == "ect"
    assert toy.init_from == "runs/toy-edm" and digits.init_from == "runs/digits-edm"
    assert cifar.init_from == "runs/cifar10-edm-official" and cifar.ect_q == 256 and cifar.lr == 1e-4
    assert cifar.batch_size == 128 and cifar.net_kwargs["dropout"] == 0.2 and cifar.distance == "pseudo_huber"
    assert isinstance(make_loss(digits), ECTLoss) and make_loss(digits).stage_steps == digits.ect_stage_steps
    full = make_loss(digits.override({"ect_short_steps": "60", "ect_stage_steps": "190"}))  # the full-mode values
    assert digits.ect_short_stages == 4 and [full.stage(k) for k in (59, 60, 239, 240, 999)] == [0, 1, 3, 4, 7]
    with pytest.raises(ValueError, match="ect_short_steps=0"):
        digits.override({"ect_short_steps": "0"})
    with pytest.raises(ValueError, match="ect_short_stages"):
        get_preset("toy-cd").override({"ect_short_stages": "2"})
    assert make_loss(toy.override({"ect_stage_steps": "0", "steps": "80"})).stage_steps == 10  # default: 8 stages
    with pytest.raises(ValueError, match="ect_q"):
        get_preset("toy-cd").override({"ect_q": "4"})
    assert make_loss(digits.override({"ect_weighting": "dt_stage"})).weighting == "dt_stage"
    with pytest.raises(ValueError, match="ect_weighting"):
        get_preset("toy-ct").override({"ect_weighting": "snr"})
    smoke = get_preset("cifar10-ect", size="smoke")
    assert smoke.steps == 4 and smoke.init_from == "runs/cifar10-edm-smoke"


def test_toy_ect_trains_from_a_teacher_run_through_the_cli(tmp_path):
    from cmlearn.cli import main
    from cmlearn.train.loop import train
    from cmlearn.train.presets import get_preset
    from cmlearn.train.runs import load_run

    teacher = train(get_preset("toy-edm").override({"steps": "20", "batch_size": "64"}), tmp_path / "edm",
                    progress=False)
    out = tmp_path / "ect"
    assert main(["train", "toy-ect", "--teacher", str(teacher), "--out", str(out), "--steps", "20", "batch_size=64",
                 "ect_stage_steps=5", "checkpoint_every=20", "log_every=10", "lr=1e-8"]) == 0
    run = load_run(out, weights="model")
    assert run.cfg.kind == "ect" and run.step == 20 and run.cfg.init_from == str(teacher.resolve())
    start = load_run(teacher).model.net.state_dict()  # --teacher is ECT's init_from: the teacher's EMA weights
    assert all(torch.allclose(v, start[k], atol=1e-4) for k, v in run.model.net.state_dict().items())
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert '"N": 4' in lines[0] and '"N": 16' in lines[1]  # q^(a+1): stage a = 1 at step 9, a = 3 at step 19
    with pytest.raises(ValueError, match="ect_q"):
        get_preset("toy-ect").override({"ect_q": "1"})


def test_init_from_a_teacher_without_dropout_into_a_network_with_dropout(tmp_path):
    """digits-ect adds dropout 0.2 to its teacher's network: the same weights, so init_from accepts it."""
    from cmlearn.train.loop import train
    from cmlearn.train.presets import TOY_NET, get_preset
    from cmlearn.train.runs import load_run

    digits, digits_teacher = get_preset("digits-ect"), get_preset("digits-edm")
    assert digits.net_kwargs["dropout"] == 0.2 and "dropout" not in digits_teacher.net_kwargs
    teacher = train(get_preset("toy-edm").override({"steps": "2", "batch_size": "16"}), tmp_path / "edm",
                    progress=False)
    cfg = get_preset("toy-ect").override({"init_from": str(teacher), "steps": "1", "batch_size": "16", "lr": "1e-12",
                                          "net_kwargs": dict(TOY_NET, input_scale=10.0, dropout=0.2)})
    run = load_run(train(cfg, tmp_path / "ect", progress=False), weights="model")
    start = load_run(teacher).model.net.state_dict()
    assert any(isinstance(m, torch.nn.Dropout) for m in run.model.modules())
    assert all(torch.allclose(v, start[k], atol=1e-6) for k, v in run.model.net.state_dict().items())


def test_mlp_loads_weights_saved_before_dropout_shared_the_activation_slot():
    from cmlearn.nets.mlp import MLP

    torch.manual_seed(0)
    net, fresh = MLP(width=16, depth=3, emb_dim=8, dropout=0.1), MLP(width=16, depth=3, emb_dim=8, dropout=0.1)
    old = {(f"body.{3 * int(k.split('.')[1]) // 2}." + k.split(".", 2)[2] if k.startswith("body.") else k): v
           for k, v in net.state_dict().items()}  # the old layout: Linear, SiLU, Dropout per layer
    assert "body.3.weight" in old and "body.2.weight" not in old and "body.9.weight" in old
    fresh.load_state_dict(old)
    x, c = torch.randn(5, 2), torch.randn(5)
    assert torch.equal(fresh.eval()(x, c), net.eval()(x, c))
    assert [k for k in MLP(width=16, depth=3, emb_dim=8).state_dict() if k.startswith("body.")] == \
        [k for k in net.state_dict() if k.startswith("body.")]  # names do not depend on dropout


def test_init_from_a_run_with_another_network_is_refused(tmp_path):
    from cmlearn.train.loop import train
    from cmlearn.train.presets import TOY_NET, get_preset

    teacher = train(get_preset("toy-edm").override({"steps": "2", "batch_size": "16"}), tmp_path / "edm",
                    progress=False)  # input_scale 10: same weights' shapes, another function
    cfg = get_preset("toy-ect").override({"init_from": str(teacher), "steps": "2", "batch_size": "16",
                                          "net_kwargs": dict(TOY_NET)})
    with pytest.raises(ValueError, match="input_scale=10.0"):
        train(cfg, tmp_path / "ect", progress=False)
