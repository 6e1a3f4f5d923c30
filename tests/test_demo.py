"""`cmlearn demo` end to end (fast mode: the live run and the toy-cd run are smoke-sized): stages, figures, summary."""

import json

from cmlearn.cli import main


def test_demo_writes_its_figures_and_summary(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "[1/2]" in text and "[2/2]" in text and "Figures:" in text
    for name in ("trajectories.png", "consistency_function.png", "cd_samples.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0 and str(tmp_path / name) in text
    res = json.loads((tmp_path / "summary.json").read_text())
    assert 0 < res["sw_1step"] < 1 and res["sw_exact_heun18"] > 0 and res["shipped"] is False  # fast: trained
