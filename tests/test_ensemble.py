"""A member of a batched ensemble (cmlearn.train.ensemble) trains like the same config run alone, and bad
ensembles are refused early."""

import json

import pytest
import torch

from cmlearn.train.checkpoint import load_checkpoint
from cmlearn.train.ensemble import train_ensemble, train_or_load_ensemble
from cmlearn.train.loop import train
from cmlearn.train.presets import get_preset

SMALL = {"net_kwargs": {"width": 32, "depth": 2, "emb_dim": 16}, "batch_size": 64, "steps": 6,
         "checkpoint_every": 3, "log_every": 2, "data": "eight_gaussians"}


def members():
    """Four members that differ in the loss: CD Euler N=6 (mu 0.95), CD Heun N=18 with mu = 0 and l1, CT, and CT
    with the stable target over 32 more reference points per step."""
    cd = get_preset("toy-cd").override(SMALL)
    ct = get_preset("toy-ct").override({**SMALL, "ct_fixed_N": 10, "ct_fixed_mu": 0.9})
    ct = ct.override({k: v for k, v in cd.to_dict().items() if k in ("lr", "lr_final", "ema_decay")})
    return [cd.override({"N": 6, "solver": "euler"}), cd.override({"mu": 0.0, "distance": "l1", "seed": 3}), ct,
            ct.override({"stable_target": True, "stable_ref": 32, "seed": 5})]


def test_members_train_like_lone_runs(tmp_path):
    cfgs = members()
    lone = [train(c, tmp_path / f"lone{i}", progress=False) for i, c in enumerate(cfgs)]
    ens = train_ensemble(cfgs, [tmp_path / f"ens{i}" for i in range(len(cfgs))], progress=False)
    for a, b in zip(lone, ens):
        ca, cb = (load_checkpoint(p / "checkpoints" / "latest.pt") for p in (a, b))
        assert ca["step"] == cb["step"] == 6 and ca["config"] == cb["config"]
        for part in ("model", "ema", "target"):
            if ca[part] is None:
                assert cb[part] is None
                continue
            for key, va in ca[part].items():
                assert torch.allclose(va, cb[part][key], rtol=1e-4, atol=1e-6), (part, key)
        la, lb = ([json.loads(line) for line in (p / "metrics.jsonl").read_text().splitlines()] for p in (a, b))
        assert [r["step"] for r in la] == [r["step"] for r in lb] == [2, 4, 6]
        assert all(abs(x["loss"] - y["loss"]) <= 1e-4 * abs(x["loss"]) + 1e-7 for x, y in zip(la, lb))
        assert all(torch.equal(x, y) for x, y in zip(ca["gen"], cb["gen"]))  # same draws


def test_members_differ_from_each_other_and_from_init(tmp_path):
    cfgs = members()[:2]
    outs = train_ensemble(cfgs, [tmp_path / "a", tmp_path / "b"], progress=False)
    a, b = (load_checkpoint(o / "checkpoints" / "latest.pt")["model"] for o in outs)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_cached_ensemble_loads_and_dedupes(tmp_path):
    cfgs = members()[:2]
    runs = train_or_load_ensemble([cfgs[0], cfgs[1], cfgs[0]], "ens", cache=tmp_path, progress=False)
    assert [r.step for r in runs] == [6, 6, 6] and runs[0].path == runs[2].path
    assert len(list(tmp_path.iterdir())) == 2  # the duplicate trained once
    again = train_or_load_ensemble(cfgs, "ens", cache=tmp_path, progress=False)
    assert [r.path for r in again] == [runs[0].path, runs[1].path]
    one_by_one = train_or_load_ensemble(cfgs, "ens", cache=tmp_path / "seq", progress=False, batched=False)
    assert [r.path.name for r in one_by_one] == [r.path.name for r in again]
    for a, b in zip(one_by_one, again):
        assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(a.model.parameters(),
                                                                               b.model.parameters()))


@pytest.mark.parametrize("bad, word", [({"lr": 1e-3}, "'lr'"), ({"batch_size": 32}, "'batch_size'")])
def test_bad_ensembles_are_refused(tmp_path, bad, word):
    cfgs = members()[:2]
    with pytest.raises(ValueError, match=word):
        train_ensemble([cfgs[0], cfgs[1].override(bad)], [tmp_path / "a", tmp_path / "b"])


def test_edm_and_wrong_out_dirs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        train_ensemble([get_preset("toy-edm").override(SMALL)], [tmp_path / "a"])
    with pytest.raises(ValueError, match="one out_dir per config"):
        train_ensemble(members()[:2], [tmp_path / "a"])


@pytest.mark.parametrize("batched", [True, False])
def test_on_checkpoint_sees_each_members_ema_and_needs_retrains(tmp_path, batched):
    cfgs = members()[:2]
    seen = []

    def hook(path, step, ema):
        seen.append((path.name, step, [p.detach().clone() for p in ema.parameters()]))
        (path / "marker.json").write_text(json.dumps(step))

    runs = train_or_load_ensemble(cfgs, "ens", cache=tmp_path, progress=False, batched=batched, on_checkpoint=hook,
                                  needs=("marker.json",))
    names = [r.path.name for r in runs]
    assert sorted((n, s) for n, s, _ in seen) == sorted((n, s) for n in names for s in (3, 6))
    for name, step, params in seen:  # the last call of each member holds the EMA weights it saved
        if step == 6:
            run = runs[names.index(name)]
            assert all(torch.allclose(a, b) for a, b in zip(params, run.model.parameters()))
    seen.clear()
    train_or_load_ensemble(cfgs, "ens", cache=tmp_path, progress=False, batched=batched, on_checkpoint=hook,
                           needs=("marker.json",))
    assert seen == []  # finished, with the needed file: loaded
    (runs[1].path / "marker.json").unlink()
    train_or_load_ensemble(cfgs, "ens", cache=tmp_path, progress=False, batched=batched, on_checkpoint=hook,
                           needs=("marker.json",))
    assert {n for n, _, _ in seen} == {names[1]}  # only the member without it trains again
