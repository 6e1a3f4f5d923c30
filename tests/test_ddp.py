"""DistributedDataParallel under torchrun on CPU (gloo): ranks agree, and match one process at the same global batch."""

import subprocess
import sys

import torch

from cmlearn.train.checkpoint import load_checkpoint

ARGS = ["train", "toy-cd", "--steps", "4", "batch_size=64", "checkpoint_every=2", "device=cpu",
        'net_kwargs={"width": 32, "depth": 2, "emb_dim": 16}']


def test_two_gloo_ranks_match_one_process(tmp_path):
    env_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "cmlearn", *ARGS, "--out", str(tmp_path / "ddp"), "grad_accum=1"]
    r = subprocess.run(env_cmd, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    from cmlearn.cli import main

    assert main([*ARGS, "--out", str(tmp_path / "single"), "grad_accum=2"]) == 0
    ddp = load_checkpoint(tmp_path / "ddp/checkpoints/latest.pt")
    one = load_checkpoint(tmp_path / "single/checkpoints/latest.pt")
    assert ddp["world"] == 2 and len(set(ddp["rank_checksums"])) == 1  # identical weights on both ranks
    assert ddp["step"] == one["step"] == 4
    # same data and noise per micro-batch slot; only the gradient summation order differs
    for name, w in one["model"].items():
        torch.testing.assert_close(ddp["model"][name], w, rtol=1e-5, atol=1e-6)


def test_continuous_kinds_are_refused_on_more_than_one_rank():
    import pytest

    from cmlearn.train.distributed import plan
    from cmlearn.train.presets import get_preset

    for name in ("toy-sct", "toy-meanflow"):
        with pytest.raises(ValueError, match="does not train under DDP yet"):
            plan(get_preset(name), torch.device("cpu"), world=2, rank=0)
        assert plan(get_preset(name), torch.device("cpu"), world=1, rank=0)[0].kind == get_preset(name).kind
