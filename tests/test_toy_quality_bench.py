"""benchmarks/toy_quality.py (issue 19) runs end to end at smoke size and prints its table of ratios."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_toy_quality_smoke(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/toy_quality.py", "--fast", "--out", str(tmp_path),
                          "--mixtures", "grid25", "--seeds", "0", "--jobs", "2"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| grid25 \| (cd|ct|ict|ect) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", out.stdout,
                      flags=re.M)
    assert [r[0] for r in rows] == ["cd", "ct", "ict", "ect"]
    assert all(float(v) > 0 for r in rows for v in r[1:])
    assert (tmp_path / "grid25-300.npy").exists()
    assert re.search(r"\| grid25 \| cd \|[^\n]*\| [0-9.]+ \| [0-9.]+ \| (yes|no)", out.stdout)  # teacher, floor
    assert re.search(r"\| grid25 \| ect \|[^\n]*\| [0-9.]+ \| [0-9.]+ \| - \|", out.stdout)  # no goal for ECT
    assert len(list(tmp_path.glob("grid25-edm-s0-*"))) == 1  # CD and ECT share one teacher run
    ses = re.findall(r"\| (?:yes|no|-)[^|]*\| ([0-9.]+), ([0-9.]+) \|$", out.stdout, flags=re.M)  # standard errors
    assert len(ses) == 4 and all(float(v) > 0 for r in ses for v in r), ses
    # one process (no pool): the iCT run is reused from the cache and scores the same, draws paired alike
    one = subprocess.run([sys.executable, "benchmarks/toy_quality.py", "--fast", "--out", str(tmp_path), "--mixtures",
                          "grid25", "--seeds", "0", "--methods", "ict", "--jobs", "1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    again = re.findall(r"^\| grid25 \| ict \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", one.stdout, flags=re.M)
    assert again == [rows[2][1:]], (again, rows)
    # --mode-weights on the iCT run: per t, model and exact-ODE weights over the 25 modes, each summing to 1
    (run_dir,) = tmp_path.glob("grid25-ict-s0-*")
    diag = subprocess.run([sys.executable, "benchmarks/toy_quality.py", "--mixtures", "grid25", "--mode-weights",
                           str(run_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert diag.returncode == 0, diag.stderr[-2000:]
    lines = [ln for ln in diag.stdout.splitlines() if ln.startswith("t = ")]
    assert len(lines) == 5
    for ln in lines:
        for part in ln.split("[")[1:]:
            ws = [float(w.strip(" '")) for w in part.split("]")[0].split(",")]
            assert len(ws) == 25 and abs(sum(ws) - 1) < 0.01
    assert "median distance to the mode's mean" in diag.stdout


def test_toy_quality_rejects_bad_override():
    out = subprocess.run([sys.executable, "benchmarks/toy_quality.py", "--fast", "--set", "gan:lr=1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "gan:lr=1" in out.stderr


def test_toy_quality_rejects_a_bad_key_before_training(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/toy_quality.py", "--fast", "--out", str(tmp_path), "--set",
                          "ect:foo=1", "--mixtures", "grid25", "--seeds", "0"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "toy-ect" in out.stderr and "'foo'" in out.stderr
    assert not list(tmp_path.glob("grid25-edm-*"))  # refused before CD's and ECT's teacher trained


def test_toy_quality_refuses_a_teacher_it_would_ignore():
    for item in ("cd:teacher=runs/toy-edm", "ect:init_from=runs/toy-edm"):
        out = subprocess.run([sys.executable, "benchmarks/toy_quality.py", "--fast", "--set", item], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and item in out.stderr and "--set edm:key=value" in out.stderr
