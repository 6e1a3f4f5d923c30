"""The CIFAR-10 presets end to end at smoke size on CPU: EDM teacher, then CD under torchrun (2 gloo ranks)."""

import json
import os
import subprocess
import sys

import torch
from cifar_fixture import make_fake_cifar10

from cmlearn.cli import main
from cmlearn.metrics.fid import random_inception_weights
from cmlearn.train.checkpoint import load_checkpoint
from cmlearn.train.runs import load_run


def test_cifar10_smoke_edm_then_cd_under_torchrun(tmp_path, capsys):
    make_fake_cifar10(tmp_path / "cifar", n_per_batch=8)
    root = tmp_path / "cifar"
    edm = tmp_path / "edm"
    assert main(["train", "cifar10-edm", "--size", "smoke", "--data-root", str(root), "--out", str(edm)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cmlearn",
           "train", "cifar10-cd", "--size", "smoke", "--data-root", str(root), "--teacher", str(edm),
           "--out", str(tmp_path / "cd")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "cd/checkpoints/latest.pt")
    assert ckpt["world"] == 2 and len(set(ckpt["rank_checksums"])) == 1 and ckpt["step"] == 4
    # CD starts from the teacher's weights (paper: initialised from the EDM model)
    run = load_run(tmp_path / "cd")
    assert run.cfg.init_from == "teacher"
    out = tmp_path / "grid.png"
    assert main(["sample", str(tmp_path / "cd"), "--n", "4", "--steps", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "cd"), "--n", "65", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "65 samples drawn" in said and "shows the first 64" in said, said
    x = torch.load(tmp_path / "cd/checkpoints/latest.pt", weights_only=False)["ema"]
    assert all(torch.isfinite(v).all() for v in x.values())
    # FID through the real pipeline (real Inception architecture, weights made here: the number is meaningless)
    weights = random_inception_weights(tmp_path / "inception.pth")
    assert main(["evaluate", str(tmp_path / "cd"), "--n", "10", "--inception-weights", str(weights)]) == 0
    res = json.loads((tmp_path / "cd/evaluation.json").read_text())
    assert res["fid_1step"] > 0 and res["fid_2step"] > 0 and res["comparable_to_paper"] is False
