"""Run evaluation: generate (one sampler for every run), sample_distance, and FD-digits of EDM and CM runs."""

import pytest
import torch

from cmlearn.core.sampling import paper_two_step_taus, prior_noise, sample
from cmlearn.train.cache import config_key, train_or_load
from cmlearn.train.config import TrainConfig
from cmlearn.train.evaluate import evaluate_digits, generate, run_taus, sample_distance
from cmlearn.train.runs import Run, build_model

NET = {"img_resolution": 8, "in_channels": 1, "channels": 8, "channel_mult": [1, 2], "num_blocks": 1,
       "attn_resolutions": []}


def _cfg(kind: str, **kw) -> TrainConfig:
    return TrainConfig(preset=f"t-{kind}", kind=kind, data="digits", net="unet", net_kwargs=dict(NET),
                       steps=4, batch_size=8, lr=1e-3, optimizer="adam", checkpoint_every=4, log_every=2,
                       **kw)


def test_digits_runs_cache_generate_and_evaluate(tmp_path, monkeypatch):
    monkeypatch.setenv("CMLEARN_CACHE", str(tmp_path))
    run = train_or_load(_cfg("edm"), "edm")
    ckpt = tmp_path / f"edm-{config_key(_cfg('edm'))}" / "checkpoints" / "latest.pt"
    assert run.step == 4 and run.path == ckpt.parent.parent and ckpt.exists() and run.shape == (1, 8, 8)
    res = evaluate_digits(run, n=16)
    assert res["fd_heun18"] > 0 and sum(res["hist_heun18"]) == 16 and len(res["hist_heun18"]) == 10
    cd = train_or_load(_cfg("cd", teacher=str(run.path), init_from="teacher", N=4), "cd")
    res = evaluate_digits(cd, n=16)
    assert {"fd_1step", "fd_2step", "hist_1step", "hist_2step"} <= set(res)
    assert res["fd_1step"] > 0 and sum(res["hist_2step"]) == 16
    two = generate(cd, 4, steps=2, seed=3)  # 2 steps on images re-noise at the paper's tau = 0.585
    assert run_taus(cd.cfg, 2) == paper_two_step_taus() and abs(paper_two_step_taus()[1] - 0.585) < 1e-3
    gen = torch.Generator().manual_seed(3)
    want = sample(cd.model, prior_noise(4, (1, 8, 8), sigma=80.0, generator=gen), paper_two_step_taus(), generator=gen)
    assert torch.equal(two, want)
    assert not torch.equal(generate(cd, 4, taus=[80.0, 5.0], seed=3), want)


def test_evaluate_digits_rejects_bad_input():
    cfg = _cfg("ct")
    run = Run(cfg, build_model(cfg).eval(), path=None, step=0, shape=(1, 8, 8))
    with pytest.raises(ValueError, match="n must be"):
        evaluate_digits(run, n=1)
    toy = TrainConfig(kind="ct", data="eight_gaussians")
    with pytest.raises(ValueError, match="eight_gaussians"):
        evaluate_digits(Run(toy, run.model, path=None, step=0, shape=(2,)), n=8)


def test_generate_follows_seed_and_sample_distance_is_paired():
    cfg = TrainConfig(kind="cd", data="eight_gaussians", net_kwargs={"width": 16, "depth": 1, "emb_dim": 8})
    run = Run(cfg, build_model(cfg).eval(), path=None, step=0, shape=(2,))
    assert build_model(cfg).T == cfg.T and build_model(cfg).eps == cfg.eps  # the model carries its time range
    a, b = generate(run, 50, steps=3, seed=1), generate(run, 50, steps=3, seed=1)
    assert a.shape == (50, 2) and torch.equal(a, b)
    ref = torch.randn(300, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    d = sample_distance(run.model, ref, steps=2, seed=4)
    assert d > 0 and d == sample_distance(run.model, ref, steps=2, seed=4)
    assert d != sample_distance(run.model, ref, steps=2, seed=5)
