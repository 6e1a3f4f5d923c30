"""digits_course: train-or-load caching and FD-digits evaluation of EDM and CM runs (tiny runs, seconds)."""

import pytest
import torch

from cmlearn.core.sampling import sample
from cmlearn.course.cd import config_key
from cmlearn.course.digits import TAU_2STEP, digits_samples, evaluate_digits_run, train_or_load
from cmlearn.train.config import TrainConfig
from cmlearn.train.runs import Run, build_model

NET = {"img_resolution": 8, "in_channels": 1, "channels": 8, "channel_mult": [1, 2], "num_blocks": 1,
       "attn_resolutions": []}


def _cfg(kind: str, **kw) -> TrainConfig:
    return TrainConfig(preset=f"t-{kind}", kind=kind, data="digits", net="unet", net_kwargs=dict(NET),
                       steps=4, batch_size=8, lr=1e-3, optimizer="adam", checkpoint_every=4, log_every=2,
                       **kw)


def test_train_or_load_caches_and_evaluates(tmp_path, monkeypatch):
    monkeypatch.setenv("CMLEARN_CACHE", str(tmp_path))
    run = train_or_load(_cfg("edm"), "edm")
    ckpt = tmp_path / f"edm-{config_key(_cfg('edm'))}" / "checkpoints" / "latest.pt"
    assert run.step == 4 and run.path == ckpt.parent.parent and ckpt.exists()
    mtime = ckpt.stat().st_mtime_ns
    again = train_or_load(_cfg("edm"), "edm")  # same config: loaded, not retrained
    assert ckpt.stat().st_mtime_ns == mtime
    other = train_or_load(_cfg("edm", seed=1), "edm")  # another config (e.g. fast vs full): its own directory
    assert other.path != run.path and ckpt.stat().st_mtime_ns == mtime
    assert torch.equal(next(again.model.parameters()), next(run.model.parameters()))
    res = evaluate_digits_run(run, n=16)
    assert res["fd_heun18"] > 0 and sum(res["hist_heun18"]) == 16 and len(res["hist_heun18"]) == 10
    cd = train_or_load(_cfg("cd", teacher=str(run.path), init_from="teacher", N=4), "cd")
    res = evaluate_digits_run(cd, n=16)
    assert {"fd_1step", "fd_2step", "hist_1step", "hist_2step"} <= set(res)
    assert res["fd_1step"] > 0 and sum(res["hist_2step"]) == 16
    two = digits_samples(cd, 4, steps=2, seed=3)  # 2 steps re-noise at the paper's tau = 0.585
    want = sample(cd.model, 4, [80.0, TAU_2STEP], shape=(1, 8, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(two, want)
    assert not torch.equal(digits_samples(cd, 4, taus=[80.0, 5.0], seed=3), want)


def test_evaluate_digits_run_rejects_bad_input():
    cfg = _cfg("ct")
    run = Run(cfg, build_model(cfg).eval(), path=None, step=0)
    with pytest.raises(ValueError, match="n must be"):
        evaluate_digits_run(run, n=1)
    toy = TrainConfig(kind="ct", data="eight_gaussians")
    with pytest.raises(ValueError, match="eight_gaussians"):
        evaluate_digits_run(Run(toy, run.model, path=None, step=0), n=8)
