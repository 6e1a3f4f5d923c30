"""The runs the course ships (data/pretrained/): each was made by its current full-mode preset (config hash),
loads, reproduces the sliced W2 stored beside it and quoted in the README, and is what train_or_load returns."""

import json
import re
from pathlib import Path

import pytest

from cmlearn.train import cache
from cmlearn.train.evaluate import evaluate_points, write_evaluation
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
    res = evaluate_points(run, n=stored["n"], seed=stored["seed"])
    for k in ("sw_1step", "sw_2step"):
        assert res[k] == pytest.approx(stored[k], rel=1e-3), k
    assert f"{stored['sw_1step']:.4f}" in (ROOT / "README.md").read_text()
    # `cmlearn evaluate` on the shipped run rewrites its file in the same format (no spurious diff in data/)
    text = (run_dir / "evaluation.json").read_text()
    assert stored["run"] == run_dir.name  # not a path of the machine that built it
    elsewhere = tmp_path / run_dir.name
    elsewhere.mkdir()
    assert write_evaluation(elsewhere, {**stored, "run": "/some/other/path"}).read_text() == text
    assert res["sw_1step"] <= res["sw_exact_heun18"] * 1.15  # the demo's claim: one step near the 34-NFE teacher


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
