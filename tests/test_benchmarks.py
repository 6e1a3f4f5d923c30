"""The FLOP-count benchmark runs (smoke-size NCSN++, real LPIPS network) and its table is consistent."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_cifar10_flops_counts_cd_above_ct_above_edm():
    text = run("benchmarks/cifar10_flops.py", "--size", "smoke", "--tflops", "100")
    rows = dict(re.findall(r"^\| (edm|cd|ct) \| ([0-9.]+) \|", text, flags=re.M))
    edm, cd, ct = (float(rows[k]) for k in ("edm", "cd", "ct"))
    lpips = float(re.search(r"LPIPS\(VGG\) at 224, forward x2 \+ backward: ([0-9.]+)", text).group(1))
    assert 80 < lpips < 110  # VGG16 features at 224: ~30.7 GFLOP forward, counted three times
    assert cd > ct > edm > 0 and ct > lpips  # CD adds the Heun teacher's two evaluations to CT's step



def test_side_by_side_benchmark_prints_both_rates_and_their_ratio():
    text = run("benchmarks/side_by_side.py", "--steps", "20")
    seq, side, ratio = re.search(r"one after another ([0-9.]+), side by side ([0-9.]+) -> ([0-9.]+)x", text).groups()
    assert float(seq) > 0 and float(side) > 0
    assert abs(float(ratio) - float(side) / float(seq)) < 0.02 * float(ratio) + 0.01  # the ratio of the two rates


def test_sliced_w2_benchmark_prints_both_times_and_their_ratio():
    text = run("benchmarks/sliced_w2_speed.py", "--n", "2000", "--projections", "100", "--rounds", "2")
    old, new, ratio = re.search(r"dim 0 ([0-9.]+) ms, cmlearn ([0-9.]+) ms -> ([0-9.]+)x", text).groups()
    assert float(old) > 0 and float(new) > 0
    assert abs(float(ratio) - float(old) / float(new)) < 0.02 * float(ratio) + 0.01


def test_stable_target_benchmark_prints_both_times_and_their_ratio():
    text = run("benchmarks/stable_target_speed.py", "--batch", "64", "--ref", "512", "--rounds", "2")
    old, new, ratio = re.search(r"one softmax ([0-9.]+) ms, cmlearn ([0-9.]+) ms -> ([0-9.]+)x", text).groups()
    assert float(old) > 0 and float(new) > 0
    assert abs(float(ratio) - float(old) / float(new)) < 0.02 * float(ratio) + 0.02


def test_jvp_benchmark_prints_both_step_times_their_ratio_and_one_loss():
    text = run("benchmarks/jvp_speed.py", "--batch", "64", "--steps", "2", "--rounds", "1")
    rows = re.findall(r"(toy-meanflow|toy-sct): torch.func.jvp ([0-9.]+) ms, MLP.jvp ([0-9.]+) ms -> ([0-9.]+)x "
                      r"\(first loss ([0-9.e+-]+) both ways", text)
    assert [r[0] for r in rows] == ["toy-meanflow", "toy-sct"], text
    for _, generic, fast, ratio, _ in rows:
        assert float(generic) > 0 and float(fast) > 0
        assert abs(float(ratio) - float(generic) / float(fast)) < 0.02 * float(ratio) + 0.01
