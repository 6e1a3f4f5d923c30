"""Runs trained side by side (cmlearn.train.parallel): worker processes write the same runs as training here,
finished jobs are skipped, failures and bad settings are named."""

import os
import time
from functools import partial

import pytest
import torch

from cmlearn.train.cache import train_or_load
from cmlearn.train.parallel import Job, chain, default_workers, side_by_side, train_job
from cmlearn.train.presets import get_preset

SMALL = {"net_kwargs": {"width": 32, "depth": 2, "emb_dim": 16}, "batch_size": 64, "steps": 8,
         "checkpoint_every": 4, "log_every": 2, "data": "eight_gaussians"}


def configs():
    return {"cd": get_preset("toy-cd").override(SMALL), "ict": get_preset("toy-ict").override(SMALL)}


def test_workers_write_the_runs_training_here_writes(tmp_path, capsys):
    cfgs = configs()
    jobs = {label: train_job(cfg, label, cache=tmp_path / "side") for label, cfg in cfgs.items()}
    assert not any(job.done() for job in jobs.values())
    assert side_by_side(jobs, workers=2, progress=False) == ["cd", "ict"]
    assert "2 processes" in capsys.readouterr().out
    assert all(job.done() for job in jobs.values())
    assert side_by_side(jobs, workers=2, progress=False) == []  # finished: nothing runs again
    for label, cfg in cfgs.items():
        there = train_or_load(cfg, label, cache=tmp_path / "side", progress=False)
        here = train_or_load(cfg, label, cache=tmp_path / "here", progress=False)
        assert there.step == here.step == 8 and there.path.name == here.path.name
        for a, b in zip(there.model.parameters(), here.model.parameters()):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_is_named(tmp_path, workers):
    bad = get_preset("toy-ict").override({**SMALL, "data": f"file:{tmp_path / 'missing.npy'}"})
    jobs = {"good": train_job(configs()["cd"], "good", cache=tmp_path),
            "bad one": train_job(bad, "bad", cache=tmp_path)}
    with pytest.raises(RuntimeError, match="'bad one' failed"):
        side_by_side(jobs, workers=workers, progress=False)


def test_a_worker_that_dies_is_named_with_its_exit_code(capsys):
    jobs = {"healthy": Job(partial(time.sleep, 2)), "dies": Job(partial(os._exit, 3))}
    with pytest.raises(RuntimeError, match=r"'dies' failed: .*exit code 3"):
        side_by_side(jobs, workers=2, progress=False)
    assert "healthy: done" in capsys.readouterr().out  # the other job was neither blamed nor killed


def test_jobs_a_worker_cannot_import_or_that_share_a_run_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'mine'.*cannot be imported"):
        side_by_side({"mine": Job(lambda: None), "other": Job(partial(time.sleep, 0))}, workers=2)
    cfg = configs()["cd"]
    with pytest.raises(ValueError, match="'a' and 'b' both write"):
        side_by_side({"a": train_job(cfg, "x", cache=tmp_path), "b": train_job(cfg, "x", cache=tmp_path)})


def test_ctrl_c_stops_the_workers(monkeypatch, tmp_path):
    import cmlearn.train.parallel as parallel

    jobs = {"long": Job(partial(time.sleep, 60), runs=[(tmp_path / "a", 10)]),
            "longer": Job(partial(time.sleep, 90), runs=[(tmp_path / "b", 10)])}
    polls = []

    def interrupted(run_dir):  # Ctrl-C arrives while the parent polls the runs' progress
        polls.append(run_dir)
        if len(polls) == 4:
            raise KeyboardInterrupt
        return 0

    monkeypatch.setattr(parallel, "_last_step", interrupted)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        side_by_side(jobs, workers=2, progress=False)
    assert time.perf_counter() - t0 < 30  # the 60 s jobs were stopped, not waited for


def test_a_chain_runs_its_jobs_in_order_in_one_worker(tmp_path):
    teacher = get_preset("toy-edm").override(SMALL)
    teacher_dir = train_job(teacher, "edm", cache=tmp_path).runs[0][0]
    student = get_preset("toy-cd").override({**SMALL, "teacher": str(teacher_dir)})  # needs the teacher's run
    jobs = {"teacher, then CD": chain(train_job(teacher, "edm", cache=tmp_path),
                                      train_job(student, "cd", cache=tmp_path)),
            "iCT": train_job(configs()["ict"], "ict", cache=tmp_path)}
    assert side_by_side(jobs, workers=2, progress=False) == ["teacher, then CD", "iCT"]
    assert all(job.done() for job in jobs.values()) and len(jobs["teacher, then CD"].runs) == 2
    with pytest.raises(ValueError, match="same files"):
        chain(Job(lambda: None, needs=("a",)), Job(lambda: None))


def test_settings_are_checked(monkeypatch):
    job = Job(lambda: None)
    assert not job.done()  # a job that names no runs always runs
    with pytest.raises(ValueError, match="workers=0"):
        side_by_side({"a": job}, workers=0)
    monkeypatch.setenv("CMLEARN_WORKERS", "3")
    assert default_workers(2) == 2 and default_workers(5) == 3
    monkeypatch.setenv("CMLEARN_WORKERS", "two")
    with pytest.raises(ValueError, match="'two'"):
        default_workers(2)
