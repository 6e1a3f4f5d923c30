import json

import numpy as np
import pytest
import torch

from cmlearn.train.checkpoint import load_checkpoint
from cmlearn.train.config import TrainConfig
from cmlearn.train.loop import learning_rate, train
from cmlearn.train.presets import get_preset
from cmlearn.train.runs import load_run

TINY = dict(net_kwargs={"width": 32, "depth": 2, "emb_dim": 16}, batch_size=64, log_every=5)


def tiny(kind="cd", **kw):
    base = dict(kind=kind, data="eight_gaussians", steps=20, checkpoint_every=10, lr=1e-3,
                net_kwargs={"width": 32, "depth": 2, "emb_dim": 16, "dropout": 0.1}, batch_size=64, log_every=5)
    base.update({"mu": 0.9} if kind == "cd" else {})
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("kind", ["cd", "ct", "ict", "edm", "ict-stable-ref"])
def test_resume_is_bit_exact(tmp_path, kind):
    cfg = tiny("ict", stable_target=True, stable_ref=48) if kind == "ict-stable-ref" else tiny(kind)
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "resumed", progress=False, stop_at=10)  # an interruption after 10 steps
    assert load_checkpoint(tmp_path / "resumed/checkpoints/latest.pt")["step"] == 10
    train(cfg, tmp_path / "resumed", progress=False)
    a = load_checkpoint(tmp_path / "straight/checkpoints/latest.pt")
    b = load_checkpoint(tmp_path / "resumed/checkpoints/latest.pt")
    assert a["step"] == b["step"] == 20
    for key in ("model", "ema") + (("target",) if a["target"] is not None else ()):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


def test_metrics_log_and_loss_decreases(tmp_path):
    cfg = tiny("cd", steps=200, checkpoint_every=200, log_every=20, lr=3e-3, mu=0.9,
               net_kwargs={"width": 64, "depth": 2, "emb_dim": 16})
    train(cfg, tmp_path, progress=False)
    recs = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in recs] == list(range(20, 201, 20))
    assert recs[-1]["loss"] < recs[0]["loss"] and all(r["N"] == 18 and r["mu"] == 0.9 for r in recs)
    run = load_run(tmp_path)
    assert run.step == 200 and not run.model.training


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import cmlearn.train.loop as tr

    real = tr.make_loss

    def poisoned(cfg, teacher=None):
        loss = real(cfg, teacher)

        def call(model, target, x0, *, k=0, generator=None):
            out = loss(model, target, x0, k=k, generator=generator)
            return out * float("nan") if k == 15 else out

        call.num_steps, call.target_decay, call.mu = loss.num_steps, loss.target_decay, loss.mu
        return call

    monkeypatch.setattr(tr, "make_loss", poisoned)
    with pytest.raises(FloatingPointError, match="step 15"):
        train(tiny("cd", steps=40, checkpoint_every=10), tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoints/latest.pt")
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_refuses_other_config(tmp_path):
    train(tiny("cd", steps=10), tmp_path, progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(tiny("cd", steps=20, lr=5e-4), tmp_path, progress=False)


def test_lr_schedules():
    cfg = tiny(steps=100, lr=1.0, lr_schedule="cosine", lr_final=0.1, warmup=10)
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 100) == pytest.approx(0.1)


def test_config_validation_and_overrides():
    with pytest.raises(ValueError, match="N=1"):
        TrainConfig(N=1)
    with pytest.raises(ValueError, match="eps=90"):
        TrainConfig(eps=90.0)
    with pytest.raises(ValueError, match="'foo'"):
        TrainConfig().override(["foo=1"])
    with pytest.raises(ValueError, match="N=abc: cannot parse 'abc' as int"):  # the key is named with the value
        TrainConfig().override(["N=abc"])
    with pytest.raises(ValueError, match="'gan'"):
        TrainConfig(kind="gan")
    cfg = TrainConfig().override(["lr=0.5", "amp=true", 'net_kwargs={"width": 8}'])
    assert cfg.lr == 0.5 and cfg.amp == "true" and cfg.net_kwargs == {"width": 8}
    with pytest.raises(ValueError, match="unknown preset 'toy-gan'"):
        get_preset("toy-gan")


def test_corrupt_checkpoint(tmp_path):
    train(tiny("cd", steps=5), tmp_path, progress=False)
    (tmp_path / "checkpoints/latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="corrupt"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_run(tmp_path / "nope")


def test_cd_on_user_point_cloud_with_empirical_teacher(tmp_path):
    pts = np.random.default_rng(0).normal(size=(500, 3)) * 0.5
    np.save(tmp_path / "pts.npy", pts)
    cfg = tiny("cd", data=f"file:{tmp_path / 'pts.npy'}", teacher="empirical", steps=5)
    train(cfg, tmp_path / "run", progress=False)
    assert load_run(tmp_path / "run").model.net.dim == 3


def test_cd_initialised_from_teacher(tmp_path):
    teacher = tmp_path / "edm"
    train(tiny("edm", steps=50, lr=3e-3, ema_decay=0.0), teacher, progress=False)
    cd = tiny("cd", steps=1, lr=1e-12, teacher=str(teacher), init_from="teacher", data="eight_gaussians")
    train(cd, tmp_path / "cd", progress=False)
    t_net = load_checkpoint(teacher / "checkpoints/latest.pt")["ema"]
    c_net = load_checkpoint(tmp_path / "cd/checkpoints/latest.pt")["model"]
    fresh = load_checkpoint(tmp_path / "cd/checkpoints/latest.pt")["config"]
    assert fresh["init_from"] == "teacher"
    diffs = [(c_net[k] - v).abs().max().item() for k, v in t_net.items() if k.startswith("net.")]
    assert max(diffs) < 1e-6
    # and without init_from the same CD run starts elsewhere
    train(cd.override({"init_from": ""}), tmp_path / "cd2", progress=False)
    c2 = load_checkpoint(tmp_path / "cd2/checkpoints/latest.pt")["model"]
    assert max((c2[k] - v).abs().max().item() for k, v in t_net.items() if k.startswith("net.")) > 1e-3
