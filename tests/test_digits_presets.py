"""Digits presets: registered with the others, UNet on digits, shrunk only by fast mode, trainable and evaluable
from the command line (a few steps, seconds)."""

import json

import pytest

from cmlearn.cli import main
from cmlearn.train.presets import PRESETS, get_preset
from cmlearn.train.runs import build_model

DIGITS = ("digits-edm", "digits-cd", "digits-ct", "digits-ict")


@pytest.mark.parametrize("name", DIGITS)
def test_digits_presets_registered(name, monkeypatch):
    assert name in PRESETS
    monkeypatch.setenv("CMLEARN_FAST", "0")
    full = get_preset(name)
    monkeypatch.setenv("CMLEARN_FAST", "1")
    fast = get_preset(name)
    for cfg in (full, fast):
        assert cfg.preset == name and cfg.net == "unet" and cfg.data == "digits"
        assert cfg.kind == name.split("-")[1]
        model = build_model(cfg)
        assert sum(p.numel() for p in model.parameters()) > 0
    assert fast.steps < full.steps and fast.net_kwargs["channels"] <= full.net_kwargs["channels"]
    with pytest.raises(ValueError, match="only 'full'"):
        get_preset(name, size="smoke")


def test_digits_cd_preset_distills_from_teacher(monkeypatch):
    monkeypatch.setenv("CMLEARN_FAST", "0")
    cd = get_preset("digits-cd")
    assert cd.teacher == "runs/digits-edm" and cd.init_from == "teacher"
    assert cd.N == 18 and cd.solver == "heun"
    assert cd.net_kwargs == get_preset("digits-edm").net_kwargs  # the student starts from the teacher's weights


def test_cli_trains_and_evaluates_digits(tmp_path, capsys):
    edm, cd = tmp_path / "edm", tmp_path / "cd"
    over = ["batch_size=4", "checkpoint_every=2", "log_every=1"]
    assert main(["train", "digits-edm", "--steps", "2", "--out", str(edm), *over]) == 0
    assert main(["train", "digits-cd", "--steps", "2", "--teacher", str(edm), "--out", str(cd), *over]) == 0
    assert main(["evaluate", str(edm), "--n", "8"]) == 0
    assert main(["evaluate", str(cd), "--n", "8"]) == 0
    res = json.loads((cd / "evaluation.json").read_text())
    assert res["preset"] == "digits-cd" and res["n"] == 8 and res["fd_1step"] > 0 and sum(res["hist_2step"]) == 8
    assert "fd_heun18" in json.loads((edm / "evaluation.json").read_text())
    assert "fd_2step" in capsys.readouterr().out
