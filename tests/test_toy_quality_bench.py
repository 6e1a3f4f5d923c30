"""benchmarks/toy_quality.py (issue 19) runs end to end at smoke size and prints its table of ratios."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_toy_quality_smoke(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/toy_quality.py", "--fast", "--out", str(tmp_path),
                          "--mixtures", "grid25", "--seeds", "0"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| grid25 \| (cd|ct|ict) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", out.stdout, flags=re.M)
    assert [r[0] for r in rows] == ["cd", "ct", "ict"]
    assert all(float(v) > 0 for r in rows for v in r[1:])
    assert (tmp_path / "grid25-300.npy").exists()
    assert re.search(r"\| grid25 \| cd \|[^\n]*\| [0-9.]+ \| [0-9.]+ \| (yes|no)", out.stdout)  # teacher, floor


def test_toy_quality_rejects_bad_override():
    out = subprocess.run([sys.executable, "benchmarks/toy_quality.py", "--fast", "--set", "gan:lr=1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "gan:lr=1" in out.stderr
