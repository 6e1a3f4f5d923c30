"""The runs the course ships (data/pretrained/): each was made by its current full-mode preset (config hash),
loads, reproduces the sliced W2 stored beside it and quoted in the README, and is what train_or_load returns."""

import json
import os
import re
from pathlib import Path

import pytest

from cmlearn.runtime import fast_mode, full_mode
from cmlearn.train import cache
from cmlearn.train.evaluate import evaluate_digits, evaluate_points, write_evaluation
from cmlearn.train.presets import get_preset
from cmlearn.train.runs import load_run

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(cache.PRETRAINED.glob("*-*")) if cache.PRETRAINED.is_dir() else []


def test_the_demo_run_is_shipped():
    assert any(p.name.startswith("toy-cd-") for p in SHIPPED), f"no shipped toy-cd run in {cache.PRETRAINED}"


@pytest.mark.parametrize("run_dir", SHIPPED, ids=lambda p: p.name)
def test_shipped_run_matches_its_preset_and_reproduces(run_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("CMLEARN_FAST", raising=False)  # shipped runs are full-mode runs
    name, key = run_dir.name.rsplit("-", 1)
    cfg = get_preset(name)
    assert cache.config_key(cfg) == key, f"{run_dir.name} was made by another {name} config: rebuild it with " \
                                         f"python scripts/build_pretrained.py {name}"
    run = load_run(run_dir)
    assert run.step == cfg.steps and run.cfg == cfg
    stored = json.loads((run_dir / "evaluation.json").read_text())
    digits = cfg.data == "digits"
    res = (evaluate_digits if digits else evaluate_points)(run, n=stored["n"], seed=stored["seed"])
    keys = sorted(k for k in stored if k.startswith("fd_")) if digits else ["sw_1step", "sw_2step"]
    assert keys, stored
    for k in keys:
        assert res[k] == pytest.approx(stored[k], rel=1e-3), k
    readme = (ROOT / "README.md").read_text()
    for k in keys:  # each figure the README quotes for this run
        quoted = f"{stored[k]:.2f}" if digits else f"{stored[k]:.4f}"
        assert quoted in readme, f"README does not quote {run_dir.name}'s {k} {quoted}"
    # `cmlearn evaluate` on the shipped run rewrites its file in the same format (no spurious diff in data/)
    text = (run_dir / "evaluation.json").read_text()
    assert stored["run"] == run_dir.name  # not a path of the machine that built it
    elsewhere = tmp_path / run_dir.name
    elsewhere.mkdir()
    assert write_evaluation(elsewhere, {**stored, "run": "/some/other/path"}).read_text() == text
    if digits:  # README: every shipped digits model draws all ten digits (1 and 2 steps, or the teacher's Heun)
        hists = {k: v for k, v in res.items() if k.startswith("hist_")}
        assert hists and all(min(v) > 0 for v in hists.values()), hists
    else:  # the demo's claim for toy-cd (one step near the 34-NFE exact teacher); the issue-14 bar for the others
        assert res["sw_1step"] <= res["sw_exact_heun18"] * (1.15 if name == "toy-cd" else 1.5), res


def test_train_or_load_prefers_the_shipped_run(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CMLEARN_FAST", raising=False)
    if not SHIPPED:
        pytest.fail("nothing shipped")
    import cmlearn.train.loop as loop

    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained instead of loading"))
    name = SHIPPED[0].name.rsplit("-", 1)[0]
    run = cache.train_or_load(get_preset(name), "x", cache=tmp_path)
    assert run.path == SHIPPED[0] and "shipped run" in capsys.readouterr().out
    assert re.search(r"retrain", cache.train_or_load.__doc__)


def test_shipped_run_loads_the_full_mode_preset_in_fast_mode(monkeypatch):
    monkeypatch.setenv("CMLEARN_FAST", "1")
    run = cache.shipped_run("toy-cd")
    assert fast_mode()  # restored after naming the full-mode preset
    with full_mode():
        assert not fast_mode() and run.cfg == get_preset("toy-cd")
    assert fast_mode() and run.cfg != get_preset("toy-cd") and run.path.parent == cache.PRETRAINED
    with pytest.raises(FileNotFoundError, match=r"toy-ict.*shipped: \['"):
        cache.shipped_run("toy-ict")
    with pytest.raises(ValueError, match="unknown preset 'toy-nope'"):
        cache.shipped_run("toy-nope")
    monkeypatch.delenv("CMLEARN_FAST")
    with full_mode():
        pass
    assert "CMLEARN_FAST" not in os.environ


def test_with_teacher_keeps_the_preset_for_the_shipped_teacher_only(monkeypatch, tmp_path):
    monkeypatch.delenv("CMLEARN_FAST", raising=False)
    edm, cd = get_preset("digits-edm"), get_preset("digits-cd")
    shipped_teacher = cache.pretrained_dir(edm)
    assert shipped_teacher is not None and cache.pretrained_dir(cd) is not None, "digits-edm / digits-cd not shipped"
    assert cache.with_teacher(cd, shipped_teacher) == cd  # so train_or_load finds the shipped CD
    import cmlearn.train.loop as loop

    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained instead of loading the shipped CD"))
    assert cache.train_or_load(cache.with_teacher(cd, shipped_teacher), "x", cache=tmp_path).path.parent == \
        cache.PRETRAINED
    not_a_teacher = cache.pretrained_dir(get_preset("digits-ct"))  # another shipped run is just a path
    assert cache.with_teacher(cd, not_a_teacher).teacher == str(not_a_teacher)
    mine = tmp_path / "digits-edm-mine"
    assert cache.with_teacher(cd, mine).teacher == str(mine)  # a teacher of one's own: distil that
    other = cd.override({"mu": 0.0})  # not shipped: the shipped teacher is named by its path
    assert cache.with_teacher(other, shipped_teacher).teacher == str(shipped_teacher)


def test_train_job_retrain_skips_the_shipped_run(tmp_path, monkeypatch):
    monkeypatch.delenv("CMLEARN_FAST", raising=False)
    from cmlearn.train.parallel import train_job

    cfg = get_preset("toy-cd")
    assert train_job(cfg, "x", cache=tmp_path).runs[0][0].parent == cache.PRETRAINED
    job = train_job(cfg, "x", cache=tmp_path, retrain=True)
    assert job.runs[0][0] == cache.run_dir(cfg, "x", cache=tmp_path) and not job.done()
    assert job.call.keywords["retrain"] is True and job.here.keywords["retrain"] is True
    assert cache.run_location(cfg, "x", cache=tmp_path) == cache.pretrained_dir(cfg)
    assert cache.run_location(cfg, "x", cache=tmp_path, retrain=True) == cache.run_dir(cfg, "x", cache=tmp_path)
    assert cache.checkpoint_step(cache.pretrained_dir(cfg)) == cfg.steps and cache.checkpoint_step(tmp_path) is None
