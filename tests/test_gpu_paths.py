"""What differs on CUDA, covered on CPU (issue: the GPU rung): dropout randomness per micro-batch slot, the CUDA
generator in checkpoints, device strings, samplers that follow the network, and options that would be ignored."""

import subprocess
import sys

import pytest
import torch

from cmlearn.cli import main
from cmlearn.core.sampling import heun_sample, prior_noise
from cmlearn.train import distributed, loop
from cmlearn.train.checkpoint import load_checkpoint
from cmlearn.train.config import TrainConfig
from cmlearn.train.runs import build_model

NET = '{"width": 32, "depth": 2, "emb_dim": 16, "dropout": 0.5}'
ARGS = ["train", "toy-ct", "--steps", "3", "batch_size=64", "checkpoint_every=3", "device=cpu", f"net_kwargs={NET}"]


def test_micro_seeds_differ_per_slot_and_step_and_repeat():
    seeds = {distributed.micro_seed(0, slot, step) for slot in range(4) for step in range(50)}
    assert len(seeds) == 200 and distributed.micro_seed(3, 1, 7) == distributed.micro_seed(3, 1, 7)
    assert distributed.micro_seed(0, 0, 1) != distributed.micro_seed(1, 0, 1)


def test_two_gloo_ranks_with_dropout_match_one_process(tmp_path):
    """Rank 0 and rank 1 draw different dropout masks, exactly those of 1 process x 2 accumulation steps."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cmlearn",
           *ARGS, "--out", str(tmp_path / "ddp"), "grad_accum=1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert main([*ARGS, "--out", str(tmp_path / "single"), "grad_accum=2"]) == 0
    ddp = load_checkpoint(tmp_path / "ddp/checkpoints/latest.pt")
    one = load_checkpoint(tmp_path / "single/checkpoints/latest.pt")
    assert ddp["world"] == 2 and len(set(ddp["rank_checksums"])) == 1
    for name, w in one["model"].items():  # only the gradient summation order differs
        torch.testing.assert_close(ddp["model"][name], w, rtol=1e-5, atol=1e-6)
    # and the same masks on both slots would give another result: 2 accumulation steps sharing one seed
    same = load_checkpoint(_train_with_shared_masks(tmp_path / "shared"))
    assert any(not torch.allclose(same["model"][k], w, rtol=1e-5, atol=1e-6) for k, w in one["model"].items())


def _train_with_shared_masks(out):
    real = loop.micro_seed
    loop.micro_seed = lambda seed, slot, step: real(seed, 0, step)  # every slot draws rank 0's masks
    try:
        assert main([*ARGS, "--out", str(out), "grad_accum=2"]) == 0
    finally:
        loop.micro_seed = real
    return out / "checkpoints" / "latest.pt"


def test_checkpoint_carries_and_restores_the_cuda_generator(monkeypatch):
    """The save/restore code path of the CUDA generator state, with torch.cuda's state calls stubbed."""
    store = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: torch.tensor([7, 8, 9], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device=None: store.update(state=state, dev=device))
    dev = torch.device("cuda", 1)
    state = distributed.rng_state(dev)
    assert torch.equal(state["cuda"], torch.tensor([7, 8, 9], dtype=torch.uint8)) and "cpu" in state
    distributed.set_rng_state(state, dev)
    assert torch.equal(store["state"], state["cuda"]) and store["dev"] == dev
    assert "cuda" not in distributed.rng_state(torch.device("cpu"))


@pytest.mark.parametrize(("device", "local_rank", "want"), [("cuda", None, "cuda:0"), ("cuda", "1", "cuda:1"),
                                                            ("cuda:3", "1", "cuda:3"), ("cpu", None, "cpu")])
def test_device_strings_resolve_to_an_indexed_gpu(monkeypatch, device, local_rank, want):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(d))
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    got = distributed.resolve_device(TrainConfig(device=device))
    assert got == torch.device(want)
    assert calls == ([torch.device(want)] if want.startswith("cuda") else [])


def test_heun_sample_follows_the_network():
    cfg = TrainConfig(kind="edm", net_kwargs={"width": 16, "depth": 1, "emb_dim": 8})
    model = build_model(cfg).double()  # a network elsewhere than the noise: here another dtype
    x = heun_sample(model, prior_noise(5, (2,)), N=4)
    assert x.dtype == torch.float64 and x.shape == (5, 2)
    exact = heun_sample(lambda x, t: 0.5 * x, prior_noise(5, (2,), dtype=torch.float64), N=4)  # a function: as given
    assert exact.dtype == torch.float64


def test_cli_sample_loads_on_the_default_device(tmp_path, monkeypatch):
    import cmlearn.runtime

    out = tmp_path / "run"
    assert main(["train", "toy-cd", "--steps", "2", "--out", str(out), "batch_size=32", "checkpoint_every=2",
                 'net_kwargs={"width": 16, "depth": 1, "emb_dim": 8}']) == 0
    asked = []
    monkeypatch.setattr(cmlearn.runtime, "default_device", lambda: asked.append(1) or torch.device("cpu"))
    assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "x.npy")]) == 0
    assert asked


@pytest.mark.parametrize(("args", "message"), [
    (["train", "toy-ct", "mu=0.5"], "mu=0.5 has no effect on kind='ct'"),
    (["train", "toy-cd", "s1=40"], "s1=40 has no effect on kind='cd'"),
    (["train", "toy-ict", "mu0=0.8"], "mu0=0.8 has no effect on kind='ict'"),
    (["train", "toy-edm", "distance=l1"], "distance='l1' has no effect on kind='edm'"),
    (["train", "toy-ct", "--teacher", "empirical"], "teacher='empirical' has no effect"),
    (["train", "toy-cd", "--data-root", "/tmp/c"], "data_root='/tmp/c' has no effect"),
    (["train", "toy-cd", "lr_schedule=constant"], "lr_final=0.02 has no effect"),
    (["train", "toy-cd", "channels_last=true"], "channels_last=true has no effect"),
    (["train", "digits-cd", "--data", "x.npy"], "--data takes a point cloud"),
    (["train", "toy-cd", "sample_every=5"], "unknown config key 'sample_every'"),
    (["train", "toy-cd", "dtype=float64"], "unknown config key 'dtype'"),
])
def test_options_that_would_be_ignored_exit_2_naming_them(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_train_into_a_file_exits_2_naming_it(tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("not a run")
    assert main(["train", "toy-cd", "--steps", "2", "--out", str(out)]) == 2
    assert f"--out {out} is a file" in capsys.readouterr().err
    assert out.read_text() == "not a run"


def test_sample_and_evaluate_refuse_options_their_run_ignores(tmp_path, capsys):
    out = tmp_path / "edm"
    assert main(["train", "toy-edm", "--steps", "2", "--out", str(out), "batch_size=32", "checkpoint_every=2",
                 'net_kwargs={"width": 16, "depth": 1, "emb_dim": 8}']) == 0
    assert main(["sample", str(out), "--steps", "2", "--out", str(tmp_path / "x.npy")]) == 2
    assert "--steps and --ts are for consistency models" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--inception-weights", "w.pt"]) == 2
    assert "--inception-weights is for CIFAR-10 runs" in capsys.readouterr().err


@pytest.mark.parametrize(("batch", "world", "accum", "micro", "want"), [
    (512, 1, 1, 0, 1), (512, 1, 1, 128, 4), (512, 8, 1, 128, 1), (512, 2, 1, 100, 4), (512, 1, 2, 512, 2),
    (60, 1, 1, 7, 10),
])
def test_accumulation_fits_the_micro_batch(batch, world, accum, micro, want):
    cfg = TrainConfig(batch_size=batch, grad_accum=accum, micro_batch=micro)
    got = distributed.accumulation(cfg, world)
    assert got == want and (batch // world) % got == 0 and (not micro or batch // world // got <= micro)


def test_accumulation_refuses_uneven_splits():
    with pytest.raises(ValueError, match="world size 3"):
        distributed.accumulation(TrainConfig(batch_size=512), 3)


def test_switches_are_on_for_image_nets_on_cuda_only():
    img = TrainConfig(kind="edm", data="digits", net="unet")
    assert set(distributed.switches(img, torch.device("cuda", 0)).values()) == {True}
    assert set(distributed.switches(img, torch.device("cpu")).values()) == {False}
    assert set(distributed.switches(TrainConfig(), torch.device("cuda", 0)).values()) == {False}  # toy MLP
    off = img.override(["compile=false", "amp=off"])
    assert distributed.switches(off, torch.device("cuda", 0)) == {"amp": False, "compile": False,
                                                                   "channels_last": True}
    assert distributed.switches(img.override(["amp=true"]), torch.device("cpu"))["amp"]  # asked for: honoured
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="maybe")


def test_cifar10_cd_preset_runs_as_written_on_one_gpu():
    from cmlearn.train.presets import get_preset

    cfg = get_preset("cifar10-cd")
    assert cfg.batch_size == 512 and cfg.micro_batch == 128  # LPIPS at 512 needs 135 GiB on an H200 (OOM)
    assert distributed.accumulation(cfg, 1) == 4 and distributed.accumulation(cfg, 8) == 1
