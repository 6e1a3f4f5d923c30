"""The default multistep schedule (``multistep_taus``): its form, its errors, and that more steps are never worse
than one on the course's shipped toy run (issue 19: the evenly spaced [80, 2.515] made 2 steps worse than 1)."""

import pytest
import torch

from cmlearn.core.sampling import default_taus, multistep_taus, paper_two_step_taus, prior_noise, sample
from cmlearn.data.toys2d import preset
from cmlearn.metrics import energy_distance
from cmlearn.train import cache
from cmlearn.train.config import TrainConfig
from cmlearn.train.evaluate import run_taus
from cmlearn.train.runs import load_run


def test_multistep_taus_form():
    assert multistep_taus(1) == [80.0]
    assert multistep_taus(2) == paper_two_step_taus()  # [T, t_7 = 0.585], the paper's searched value
    for k in (3, 4, 6):
        taus = multistep_taus(k)
        assert len(taus) == k and taus[:2] == paper_two_step_taus()
        assert all(a > b for a, b in zip(taus, taus[1:])) and taus[-1] > 0.002
    assert multistep_taus(3)[2] == pytest.approx(0.0598, abs=1e-3)  # t^(1/7)-midpoint of eps and 0.585
    assert multistep_taus(3, t2=1.0, T=40.0)[:2] == [40.0, 1.0]
    cfg = TrainConfig(kind="ct", data="eight_gaussians")
    assert run_taus(cfg, 3) == multistep_taus(3) and run_taus(cfg, 2) != default_taus(2)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_multistep_taus_rejects_bad_steps(bad):
    with pytest.raises(ValueError, match="steps must be"):
        multistep_taus(bad)


def test_multistep_taus_rejects_bad_t2():
    with pytest.raises(ValueError, match="t2=90"):
        multistep_taus(2, t2=90.0)
    with pytest.raises(ValueError, match="t2=0.001"):
        multistep_taus(2, t2=0.001)


def test_more_steps_never_worse_on_the_shipped_toy_run():
    """Energy distance to fresh data (3 draws of 4000 points, paired noise): 2 and 3 calls of the default schedule
    are at least as good as 1 on the shipped toy-cd run."""
    shipped = sorted(cache.PRETRAINED.glob("toy-cd-*"))
    assert shipped, "no shipped toy-cd run"
    run = load_run(shipped[0])
    dist = preset(run.cfg.data)
    gen = torch.Generator().manual_seed(0)
    refs = [dist.sample(4000, generator=gen) for _ in range(3)]

    def ed(taus):
        g = torch.Generator().manual_seed(1)
        return sum(energy_distance(sample(run.model, prior_noise(4000, (2,), generator=g), taus, generator=g)
                                   .double(), r) for r in refs) / len(refs)

    one, two, three = (ed(run_taus(run.cfg, k)) for k in (1, 2, 3))
    assert two <= one and three <= one, (one, two, three)
