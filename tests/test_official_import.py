"""Importing the paper's released CIFAR-10 checkpoints (Flax msgpack, openai/consistency_models_cifar10).

No real checkpoint is downloaded: the tests write files in the same format (flax.serialization.to_bytes's msgpack)
and naming (jcm/models/ncsnpp.py's Flax module names) with random weights, import them, and check the imported
network against computations done directly on the raw NHWC arrays, as the Flax layers define them.
"""

import json
import math

import msgpack
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from cmlearn.cli import main
from cmlearn.data.official_checkpoint import flatten, read_flax_msgpack, unflatten, write_flax_msgpack
from cmlearn.nets.ncsnpp import NCSNpp, ncsnpp_config
from cmlearn.nets.ncsnpp_official import expected_shapes, state_dict_from_official
from cmlearn.train.imports import detect_distance, export_official, import_checkpoint
from cmlearn.train.runs import load_run


def raw_params(cfg, seed=0):
    """Random arrays for every official parameter name of an NCSN++ of config ``cfg`` (Flax layouts)."""
    rng = np.random.default_rng(seed)
    shapes = expected_shapes(NCSNpp(**cfg), cfg)
    out = {}
    for name, shape in shapes.items():
        fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 1
        scale = 16.0 if name.endswith("/W") and len(shape) == 1 else 1.0 / math.sqrt(fan_in)
        out[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out


def write_state(path, params, *, lr=4e-4, target=False):
    """A jcm State (StateWithTarget with ``target``) as flax.serialization.to_bytes writes it."""
    state = {"step": np.asarray(800001, dtype=np.int32), "lr": lr, "ema_rate": 0.9999,
             "params": unflatten({k: v * 0.5 for k, v in params.items()}), "params_ema": unflatten(params),
             "model_state": {}, "opt_state": {"0": {"count": np.asarray(3, np.int32)}, "1": {}},
             "rng_state": np.arange(2, dtype=np.uint32)}
    if target:
        state["target_params"] = unflatten(params)
    return write_flax_msgpack(state, path)


# ---------------------------------------------------------------- the file format


def test_flax_msgpack_bytes_and_round_trip(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = write_flax_msgpack({"p": {"w": a}, "step": np.int64(7), "lr": 1e-3, "xs": [a[0], 2]}, tmp_path / "f")
    # the wire format by hand: arrays are ExtType 1 of msgpack((shape, dtype name, C bytes)); lists are "0", "1"
    ext = lambda x, code=1: msgpack.ExtType(code, msgpack.packb((x.shape, x.dtype.name, x.tobytes()),  # noqa: E731
                                                                use_bin_type=True))
    want = {"p": {"w": ext(a)}, "step": ext(np.asarray(np.int64(7)), 3), "lr": 1e-3, "xs": {"0": ext(a[0]), "1": 2}}
    assert msgpack.unpackb(path.read_bytes(), raw=False) == want
    back = read_flax_msgpack(path)
    assert np.array_equal(back["p"]["w"], a) and back["p"]["w"].dtype == np.float32
    assert back["step"] == 7 and back["lr"] == 1e-3 and np.array_equal(back["xs"]["0"], a[0])
    (tmp_path / "bad").write_bytes(b"\x93\x01")
    with pytest.raises(ValueError, match="not a Flax msgpack checkpoint"):
        read_flax_msgpack(tmp_path / "bad")


# ---------------------------------------------------------------- names and shapes of the paper's net


@pytest.fixture(scope="module")
def paper_shapes():
    cfg = ncsnpp_config("cifar10")
    return expected_shapes(NCSNpp(**cfg), cfg)


def test_paper_net_names_shapes_and_count(paper_shapes):
    """Hand-derived from jcm/models/ncsnpp.py: 33 BigGAN blocks (12 + 2 down, 2 middle, 15 + 2 up), 6 attention
    blocks (4 at 16x16 in the encoder, the middle one, one after the 16x16 decoder level), 2 pyramid convs."""
    s = paper_shapes
    assert s["GaussianFourierProjection_0/W"] == (128,)
    assert s["Dense_0/kernel"] == (256, 512) and s["Dense_1/kernel"] == (512, 512)
    assert s["Conv_0/kernel"] == (3, 3, 3, 128) and s["Conv_1/kernel"] == (3, 3, 256, 3)
    assert s["GroupNorm_0/scale"] == (256,)
    assert s["ResnetBlockBigGANpp_0/Conv_2/kernel"] == (1, 1, 128, 256)  # 128 -> 256 needs a shortcut conv
    assert "ResnetBlockBigGANpp_1/Conv_2/kernel" not in s
    assert s["ResnetBlockBigGANpp_4/Conv_2/kernel"] == (1, 1, 256, 256)  # the first down block
    assert s["ResnetBlockBigGANpp_0/Dense_0/kernel"] == (512, 256)
    assert s["Downsample_0/Conv2d_0/weight"] == (3, 3, 3, 256) and s["Downsample_1/Conv2d_0/weight"] == (3, 3, 256, 256)
    assert s["ResnetBlockBigGANpp_32/Conv_0/kernel"] == (3, 3, 384, 256)  # last block eats conv_in's 128 channels
    assert s["AttnBlockpp_5/NIN_3/W"] == (256, 256) and s["AttnBlockpp_4/GroupNorm_0/scale"] == (256,)
    for absent in ("ResnetBlockBigGANpp_33/Conv_0/kernel", "AttnBlockpp_6/NIN_0/W", "Downsample_2/Conv2d_0/weight"):
        assert absent not in s
    assert len(s) == 445
    assert sum(math.prod(v) for v in s.values()) == 56_395_523 + 128  # cmlearn's parameters + the frequencies W


# ---------------------------------------------------------------- the imported net computes what the arrays say


def _conv_nhwc(x, k, b, *, stride=1, pad=None):
    """Cross-correlation (Flax nn.Conv / lax.conv_general_dilated, HWIO kernel); SAME padding by default."""
    p = k.shape[0] // 2 if pad is None else pad
    x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    win = sliding_window_view(x, k.shape[:2], axis=(1, 2))[:, ::stride, ::stride]  # (B, H, W, C, kh, kw)
    return np.einsum("bhwcij,ijco->bhwo", win, k) + b


def _group_norm(x, scale, bias):
    c = x.shape[-1]
    g = min(c // 4, 32)
    xg = x.reshape(*x.shape[:-1], g, c // g)
    mu, var = xg.mean(axis=(1, 2, 4), keepdims=True), xg.var(axis=(1, 2, 4), keepdims=True)
    return ((xg - mu) / np.sqrt(var + 1e-6)).reshape(x.shape) * scale + bias


def _swish(x):
    return x / (1 + np.exp(-x))


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


def _close(torch_out, numpy_nhwc, tol=2e-4):
    ref = numpy_nhwc if numpy_nhwc.ndim == 2 else numpy_nhwc.transpose(0, 3, 1, 2)
    got = torch_out.detach().numpy()
    assert np.abs(got - ref).max() <= tol * (1 + np.abs(ref).max()), np.abs(got - ref).max()


@pytest.fixture(scope="module")
def imported():
    """A smoke-sized NCSN++ with attention at 16x16 too, loaded from random official-layout arrays."""
    cfg = dict(ncsnpp_config("smoke"), attn_resolutions=[16])
    raw = raw_params(cfg, seed=1)
    net = NCSNpp(**cfg).eval()
    net.load_state_dict(state_dict_from_official(net, cfg, raw))
    return raw, net


def test_time_embedding_and_first_conv_match_the_raw_arrays(imported):
    p, net = imported
    c = np.array([-1.3, 0.2, 1.1], dtype=np.float64)
    proj = c[:, None] * p["GaussianFourierProjection_0/W"][None] * 2 * np.pi  # layerspp.GaussianFourierProjection
    temb = np.concatenate([np.sin(proj), np.cos(proj)], axis=-1) @ p["Dense_0/kernel"] + p["Dense_0/bias"]
    temb = _swish(temb) @ p["Dense_1/kernel"] + p["Dense_1/bias"]
    _close(net.emb1(torch.nn.functional.silu(net.emb0(net.fourier(torch.tensor(c))))), temb)
    x = np.random.default_rng(2).standard_normal((2, 32, 32, 3))
    _close(net.conv_in(_nchw(x)), _conv_nhwc(x, p["Conv_0/kernel"], p["Conv_0/bias"]))


def test_resblock_attention_and_pyramid_match_the_raw_arrays(imported):
    p, net = imported
    rng = np.random.default_rng(3)
    x, temb = rng.standard_normal((2, 32, 32, 16)), rng.standard_normal((2, 64))
    r = "ResnetBlockBigGANpp_0/"  # layerspp.ResnetBlockBigGANpp, no resampling, 16 -> 16 channels (no Conv_2)
    h = _conv_nhwc(_swish(_group_norm(x, p[r + "GroupNorm_0/scale"], p[r + "GroupNorm_0/bias"])),
                   p[r + "Conv_0/kernel"], p[r + "Conv_0/bias"])
    h = h + (_swish(temb) @ p[r + "Dense_0/kernel"] + p[r + "Dense_0/bias"])[:, None, None, :]
    h = _swish(_group_norm(h, p[r + "GroupNorm_1/scale"], p[r + "GroupNorm_1/bias"]))
    h = _conv_nhwc(h, p[r + "Conv_1/kernel"], p[r + "Conv_1/bias"])
    _close(net.enc["32x32_block0"](_nchw(x), torch.from_numpy(temb).float()), (x + h) / np.sqrt(2))

    y = rng.standard_normal((2, 16, 16, 32))
    a = "AttnBlockpp_0/"  # layerspp.AttnBlockpp: NIN q, k, v; softmax over all pixels; NIN out; (x + h) / sqrt 2
    hn = _group_norm(y, p[a + "GroupNorm_0/scale"], p[a + "GroupNorm_0/bias"])
    q, k, v = (hn @ p[f"{a}NIN_{i}/W"] + p[f"{a}NIN_{i}/b"] for i in range(3))
    w = np.einsum("bhwc,bHWc->bhwHW", q, k).reshape(2, 16, 16, 256) * 32**-0.5
    w = np.exp(w - w.max(-1, keepdims=True))
    w = (w / w.sum(-1, keepdims=True)).reshape(2, 16, 16, 16, 16)
    h = np.einsum("bhwHW,bHWc->bhwc", w, v) @ p[a + "NIN_3/W"] + p[a + "NIN_3/b"]
    _close(net.enc["16x16_block0"].attn(_nchw(y)), (y + h) / np.sqrt(2))

    img = rng.standard_normal((2, 32, 32, 3))  # up_or_down_sampling.conv_downsample_2d: FIR pad 2, conv stride 2
    fir = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    blur = _conv_nhwc(img, np.einsum("ij,cd->ijcd", fir, np.eye(3)), 0.0, pad=2)  # depthwise as a diagonal kernel
    ref = _conv_nhwc(blur, p["Downsample_0/Conv2d_0/weight"], p["Downsample_0/Conv2d_0/bias"], stride=2, pad=0)
    _close(net.enc["16x16_pyramid"](_nchw(img)), ref)


# ---------------------------------------------------------------- the run directory, through the command line


def test_import_checkpoint_cli_then_sample_and_evaluate(tmp_path, capsys):
    from cifar_fixture import make_fake_cifar10

    from cmlearn.metrics.fid import random_inception_weights

    cfg = ncsnpp_config("smoke")
    raw = raw_params(cfg, seed=4)
    file = write_state(tmp_path / "cd-lpips" / "checkpoints" / "checkpoint_80", raw)
    run_dir = tmp_path / "imported-cd"
    assert main(["import-checkpoint", str(file), "--out", str(run_dir)]) == 0
    assert "preset cifar10-cd" in capsys.readouterr().out
    run = load_run(run_dir)
    assert run.cfg.preset == "cifar10-cd" and run.cfg.kind == "cd" and run.cfg.distance == "lpips"
    assert run.step == 800001 and run.shape == (3, 32, 32)
    ref = NCSNpp(**cfg).eval()
    ref.load_state_dict(state_dict_from_official(ref, cfg, raw))  # the EMA weights (params_ema) are the run's
    x, c = torch.randn(2, 3, 32, 32), torch.tensor([0.3, -0.7])
    assert torch.equal(run.model.net(x, c), ref(x, c))
    assert torch.equal(load_run(run_dir, weights="model").model.net.conv_in.weight, 0.5 * ref.conv_in.weight)
    info = json.loads((run_dir / "imported.json").read_text())
    assert info["preset"] == "cifar10-cd" and len(info["sha256"]) == 64 and info["weights"]["ema"] == "params_ema"

    assert main(["sample", str(run_dir), "--n", "4", "--steps", "2", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()
    make_fake_cifar10(tmp_path / "cifar", n_per_batch=4)
    cfgj = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**cfgj, "data_root": str(tmp_path / "cifar")}))
    weights = random_inception_weights(tmp_path / "inception.pth")
    assert main(["evaluate", str(run_dir), "--n", "8", "--inception-weights", str(weights)]) == 0
    res = json.loads((run_dir / "evaluation.json").read_text())
    assert res["fid_1step"] > 0 and res["fid_2step"] > 0 and res["comparable_to_paper"] is False


def test_presets_are_detected_from_the_state(tmp_path):
    raw = raw_params(ncsnpp_config("smoke"), seed=5)
    edm = import_checkpoint(write_state(tmp_path / "edm_cifar10_ema", raw, lr=1e-3), tmp_path / "edm")
    assert load_run(edm).cfg.preset == "cifar10-edm" and load_run(edm).cfg.kind == "edm"
    ct = import_checkpoint(write_state(tmp_path / "ct-lpips" / "checkpoint_74", raw, lr=2e-4, target=True),
                           tmp_path / "ct")
    assert load_run(ct).cfg.preset == "cifar10-ct"
    assert torch.load(ct / "checkpoints/latest.pt", weights_only=False)["target"] is not None
    with pytest.raises(ValueError, match="cannot tell which preset"):
        import_checkpoint(write_state(tmp_path / "unknown", raw, lr=3e-4), tmp_path / "u")
    assert detect_distance(tmp_path / "cd-l1" / "checkpoint_80") == "l1" and detect_distance(tmp_path / "x") is None
    # export is the inverse of import: the same arrays under the same names, the same State fields
    back = read_flax_msgpack(export_official(ct, tmp_path / "exported"))
    orig = read_flax_msgpack(tmp_path / "ct-lpips" / "checkpoint_74")
    assert set(back) == set(orig)
    for key in ("params_ema", "params", "target_params"):
        a, b = flatten(orig[key]), flatten(back[key])
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_bare_parameter_tree_is_detected_by_the_release_name(tmp_path):
    raw = raw_params(ncsnpp_config("smoke"), seed=7)
    edm = import_checkpoint(write_flax_msgpack(unflatten(raw), tmp_path / "edm_cifar10_ema"), tmp_path / "edm")
    assert load_run(edm).cfg.preset == "cifar10-edm"  # no lr in the file: the release's name says EDM
    with pytest.raises(ValueError, match="cannot tell which preset"):
        import_checkpoint(write_flax_msgpack(unflatten(raw), tmp_path / "weights"), tmp_path / "w")


def test_a_mismatched_file_is_refused_naming_the_parameter(tmp_path, capsys):
    raw = raw_params(ncsnpp_config("smoke"), seed=6)
    bad = dict(raw)
    bad["ResnetBlockBigGANpp_3/Conv_1/kernel"] = bad["ResnetBlockBigGANpp_3/Conv_1/kernel"][..., :8]
    with pytest.raises(ValueError, match=r"ResnetBlockBigGANpp_3/Conv_1/kernel has shape \(3, 3, 32, 8\)"):
        import_checkpoint(write_state(tmp_path / "shape", bad), tmp_path / "a")
    missing = {k: v for k, v in raw.items() if k != "AttnBlockpp_0/NIN_2/W"}
    assert main(["import-checkpoint", str(write_state(tmp_path / "missing", missing)), "--out",
                 str(tmp_path / "b")]) == 2
    assert "AttnBlockpp_0/NIN_2/W" in capsys.readouterr().err and not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="AttnBlockpp_1/NIN_0/W in the file has no counterpart"):
        import_checkpoint(write_state(tmp_path / "extra", {**raw, "AttnBlockpp_1/NIN_0/W": raw["Dense_1/kernel"]}),
                          tmp_path / "c")
    with pytest.raises(FileNotFoundError):
        import_checkpoint(tmp_path / "nowhere", tmp_path / "d")
    (tmp_path / "trained" / "checkpoints").mkdir(parents=True)
    (tmp_path / "trained" / "checkpoints" / "latest.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="holds a trained run"):
        import_checkpoint(write_state(tmp_path / "ok", raw), tmp_path / "trained")
