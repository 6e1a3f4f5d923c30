"""The ``cmlearn`` command end to end at tiny sizes: train (toy-cd, toy-edm, a learned teacher on a --data
file), sample (.npy, .png, --ts), evaluate, and clear errors (exit code 2) for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cmlearn.cli import main
from cmlearn.core.sampling import multistep_taus
from cmlearn.data.toys2d import preset
from cmlearn.train.config import TrainConfig

TINY = ['net_kwargs={"width": 32, "depth": 2, "emb_dim": 16}', "batch_size=64", "checkpoint_every=4",
        "log_every=2"]


def train(tmp: Path, name: str, *args: str, steps: int = 6) -> Path:
    out = tmp / name
    assert main(["train", *args, "--out", str(out), "--steps", str(steps), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def points_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "points.npy"
    np.save(path, preset("eight_gaussians").sample(500).numpy())
    return path


@pytest.fixture(scope="module")
def cd_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("runs"), "toy-cd", "toy-cd")


def test_train_toy_cd_writes_a_run(cd_run, capsys):
    cfg = TrainConfig.load(cd_run / "config.json")
    assert cfg.preset == "toy-cd" and cfg.kind == "cd" and cfg.steps == 6 and cfg.batch_size == 64
    assert (cd_run / "checkpoints" / "latest.pt").exists()
    recs = [json.loads(line) for line in open(cd_run / "metrics.jsonl")]
    assert [r["step"] for r in recs] == [2, 4, 6] and all(np.isfinite(r["loss"]) for r in recs)


def test_learned_teacher_on_a_data_file(tmp_path, points_file, capsys):
    edm = train(tmp_path, "edm", "toy-edm", "--data", str(points_file))
    assert TrainConfig.load(edm / "config.json").kind == "edm"
    cd = train(tmp_path, "cd", "toy-cd", "--data", str(points_file), "--teacher", str(edm), "N=10", "mu=0.9")
    cfg = TrainConfig.load(cd / "config.json")
    assert cfg.teacher == str(edm.resolve()) and cfg.data == "file:" + str(points_file.resolve())
    assert (cfg.N, cfg.mu) == (10, 0.9)
    out = tmp_path / "s.npy"
    assert main(["sample", str(cd), "--n", "40", "--out", str(out)]) == 0
    assert np.load(out).shape == (40, 2)
    # a CD model can not use an EDM run's weights as its teacher the other way round
    assert main(["train", "toy-cd", "--data", str(points_file), "--teacher", str(cd), "--out",
                 str(tmp_path / "bad"), "--steps", "2", *TINY]) == 2
    assert "must be an 'edm' run" in capsys.readouterr().err


def test_sample_npy_png_and_time_points(cd_run, tmp_path, capsys):
    npy, png = tmp_path / "x.npy", tmp_path / "x.png"
    assert main(["sample", str(cd_run), "--n", "64", "--steps", "2", "--seed", "3", "--out", str(npy)]) == 0
    x = np.load(npy)
    assert x.shape == (64, 2) and np.isfinite(x).all()
    ts = ",".join(repr(t) for t in multistep_taus(2))  # what --steps 2 uses: [80, 0.585]
    assert main(["sample", str(cd_run), "--n", "64", "--ts", ts, "--seed", "3", "--out", str(npy)]) == 0
    assert np.allclose(np.load(npy), x, atol=1e-6)
    other = ["sample", str(cd_run), "--n", "64", "--ts", "80,2.515", "--seed", "3", "--out", str(npy)]
    assert main(other) == 0
    assert not np.allclose(np.load(npy), x, atol=1e-3)  # other time points, other samples
    assert main(["sample", str(cd_run), "--n", "64", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sample", str(cd_run), "--n", "8", "--out", str(tmp_path / "x.txt")]) == 2
    assert ".npy or .png" in capsys.readouterr().err
    assert main(["sample", str(cd_run), "--n", "8", "--ts", "0.5,80", "--out", str(npy)]) == 2
    assert "decreasing" in capsys.readouterr().err


def test_evaluate_prints_and_saves_distances(cd_run, capsys):
    assert main(["evaluate", str(cd_run), "--n", "300"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((cd_run / "evaluation.json").read_text())
    for key in ("sw_1step", "sw_2step", "sw_exact_heun18", "sw_floor"):
        assert np.isfinite(res[key]) and key in printed
    assert res["n"] == 300
    assert f"wrote {cd_run / 'evaluation.json'}" in printed


def test_evaluate_leaves_a_shipped_runs_file_alone(capsys):
    from cmlearn.train.cache import PRETRAINED

    shipped = sorted(PRETRAINED.glob("digits-ct-*"))[0]
    before = (shipped / "evaluation.json").read_bytes()
    assert main(["evaluate", str(shipped), "--n", "50", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "not written" in printed and "hist_*" in printed and "fd_*" in printed
    assert (shipped / "evaluation.json").read_bytes() == before  # what the README quotes


@pytest.mark.parametrize("content, message", [
    (np.zeros(10), "expected an (n, d) array"),
    (np.zeros((4, 3, 2)), "expected an (n, d) array"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]), "1 rows contain NaN or Inf"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
])
def test_bad_data_files_exit_2_with_a_clear_message(tmp_path, capsys, content, message):
    path = tmp_path / "bad.npy"
    np.save(path, content)
    assert main(["train", "toy-cd", "--data", str(path), "--teacher", "empirical",
                 "--out", str(tmp_path / "r"), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not (tmp_path / "r").exists()


def test_missing_and_unreadable_inputs_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.npy"
    assert main(["train", "toy-cd", "--data", str(missing), "--out", str(tmp_path / "r")]) == 2
    assert "data file not found" in capsys.readouterr().err
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a numpy file")
    assert main(["train", "toy-cd", "--data", str(garbage), "--out", str(tmp_path / "r")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "no-run"), "--out", str(tmp_path / "x.npy")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "no-run")]) == 2


def test_bad_settings_exit_2(tmp_path, points_file, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "toy-cd", "--data", str(points_file), "--out", out, "--steps", "2"]) == 2
    assert "no exact score" in capsys.readouterr().err  # a file with the default exact teacher
    assert main(["train", "toy-cd", "no_such_key=1", "--out", out]) == 2
    assert "unknown config key 'no_such_key'" in capsys.readouterr().err
    assert main(["train", "toy-cd", "mu=1.5", "--out", out]) == 2
    assert "mu" in capsys.readouterr().err
    assert main(["train", "no-such-preset", "--out", out]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_console_script_reports_bad_file_with_exit_code_2(tmp_path):
    script = Path(sys.executable).with_name("cmlearn")
    assert script.exists(), f"console script not installed next to {sys.executable}"
    path = tmp_path / "nan.npy"
    np.save(path, np.array([[0.0, np.inf], [1.0, 2.0]]))
    proc = subprocess.run([str(script), "train", "toy-cd", "--data", str(path), "--teacher", "empirical",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "cmlearn train: error:" in proc.stderr and "NaN or Inf" in proc.stderr


def test_train_says_when_a_finished_run_leaves_nothing_to_train(tmp_path, capsys):
    out = train(tmp_path, "r", "toy-cd")
    assert capsys.readouterr().out.strip().endswith(f"run written to {out}")
    train(tmp_path, "r", "toy-cd")  # the same run again: loaded, not retrained
    text = capsys.readouterr().out
    assert "nothing trained" in text and "finished at step 6" in text and "--no-resume" in text
    train(tmp_path, "r", "toy-cd", steps=8)  # more steps continue it
    assert "(resumed at step 6)" in capsys.readouterr().out
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 8
