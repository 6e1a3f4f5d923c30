"""The run cache: train_or_load trains a config once, keyed by its hash, and resumes or reloads after."""

import pytest
import torch

from cmlearn.train import cache
from cmlearn.train.config import TrainConfig


def tiny(**kw):
    base = dict(kind="cd", data="eight_gaussians", steps=4, checkpoint_every=2, log_every=2, batch_size=32,
                net_kwargs={"width": 16, "depth": 1, "emb_dim": 8}, mu=0.9)
    base.update(kw)
    return TrainConfig(**base)


def test_train_or_load_trains_once_per_config(tmp_path, monkeypatch):
    import cmlearn.train.loop as loop

    calls = []
    real = loop.train
    monkeypatch.setattr(loop, "train", lambda cfg, out, **kw: calls.append(cfg.N) or real(cfg, out, **kw))
    run = cache.train_or_load(tiny(), "a", cache=tmp_path)
    assert run.step == 4 and calls == [18] and run.shape == (2,)
    again = cache.train_or_load(tiny(), "a", cache=tmp_path)
    assert calls == [18] and again.path == run.path  # loaded, not retrained
    other = cache.train_or_load(tiny(N=6), "a", cache=tmp_path)
    assert calls == [18, 6] and other.path != run.path  # another config, another directory
    longer = cache.train_or_load(tiny(steps=6), "a", cache=tmp_path)
    assert longer.step == 6
    monkeypatch.setenv("CMLEARN_CACHE", str(tmp_path / "env"))
    assert cache.cache_dir() == tmp_path / "env"
    assert cache.run_dir(tiny(), "a").parent == tmp_path / "env"
    with pytest.raises(ValueError, match="directory name"):
        cache.train_or_load(tiny(), "a/b", cache=tmp_path)


def test_train_or_load_needs_its_side_files(tmp_path):
    run = cache.train_or_load(tiny(), "n", cache=tmp_path)
    stamp = (run.path / "checkpoints" / "latest.pt").stat().st_mtime_ns
    seen = []

    def hook(step, ema):
        seen.append(step)
        (run.path / "curve.json").write_text("[]")

    again = cache.train_or_load(tiny(), "n", cache=tmp_path, needs=("curve.json",), on_checkpoint=hook)
    # the file is missing, so the finished run trains afresh (a resumed one would call no hook and never write it)
    assert seen == [2, 4] and (run.path / "checkpoints" / "latest.pt").stat().st_mtime_ns != stamp
    assert again.step == run.step and all(torch.equal(a, b) for a, b in zip(again.model.parameters(),
                                                                            run.model.parameters()))
    seen.clear()
    cache.train_or_load(tiny(), "n", cache=tmp_path, needs=("curve.json",), on_checkpoint=hook)
    assert seen == []  # now it has the file: loaded


def test_is_finished_reads_the_step_without_building_the_model(tmp_path, monkeypatch):
    run = cache.train_or_load(tiny(), "f", cache=tmp_path)
    monkeypatch.setattr(cache, "load_run", lambda *a, **k: pytest.fail("built the model to read a step"))
    assert cache.is_finished(run.path, 4) and not cache.is_finished(run.path, 5)
    assert not cache.is_finished(run.path, 4, needs=("missing.json",))
    assert not cache.is_finished(tmp_path / "nothing", 1)
    (run.path / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="corrupt"):
        cache.is_finished(run.path, 4)
