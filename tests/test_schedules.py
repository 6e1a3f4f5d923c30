import math

import pytest
import torch

from cmlearn.core.schedules import (
    ct_ema_decay,
    ct_num_steps,
    ict_num_steps,
    karras_sigmas,
    lognormal_index_weights,
)

PAPER_N18 = [0.002, 0.0075, 0.023, 0.060, 0.140, 0.296, 0.585, 1.09, 1.92, 3.26, 5.32, 8.40, 12.91,
             19.35, 28.37, 40.79, 57.59, 80.0]


def test_karras_n18_matches_paper():
    ts = karras_sigmas(18)
    assert ts.shape == (18,)
    for got, want in zip(ts.tolist(), PAPER_N18):
        assert got == pytest.approx(want, rel=0.02, abs=2e-4), (got, want)


@pytest.mark.parametrize("n", [2, 3, 18, 150])
def test_karras_endpoints_and_monotone(n):
    ts = karras_sigmas(n, eps=0.01, T=40.0, rho=5.0)
    assert ts[0].item() == 0.01 and ts[-1].item() == 40.0
    assert (ts[1:] > ts[:-1]).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=1), "N="), (dict(n=18, eps=80.0), "eps=80"), (dict(n=18, eps=1.0, T=0.5), "eps=1"),
    (dict(n=18, rho=0.0), "rho=0"), (dict(n=18, eps=-1.0), "eps=-1"),
])
def test_karras_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        karras_sigmas(**kwargs)


def test_ct_schedule_endpoints_paper_and_official():
    K = 800_000
    assert ct_num_steps(0, K=K) == 2  # N(0) = s0
    assert ct_num_steps(K, K=K) == 151  # N(K) = s1 + 1
    ns = [ct_num_steps(k, K=K) for k in range(0, K + 1, 10_000)]
    assert all(b >= a for a, b in zip(ns, ns[1:]))
    assert ct_ema_decay(0, K=K) == pytest.approx(math.exp(2 * math.log(0.9) / 2))  # = 0.9
    assert ct_ema_decay(0, K=K) == pytest.approx(0.9)
    assert ct_ema_decay(0, K=K, official=True) == pytest.approx(0.81)
    assert ct_ema_decay(K, K=K) == pytest.approx(math.exp(2 * math.log(0.9) / 151))
    assert ct_ema_decay(K, K=K, official=True) == pytest.approx(math.exp(2 * math.log(0.9) / 150))


def test_ict_curriculum_sequence():
    K = 400_000
    seen = sorted({ict_num_steps(k, K=K) for k in range(0, K + 1, 1000)})
    assert seen == [11, 21, 41, 81, 161, 321, 641, 1281]
    assert ict_num_steps(0, K=K) == 11 and ict_num_steps(K, K=K) == 1281


def test_lognormal_weights():
    ts = karras_sigmas(11)
    w = lognormal_index_weights(ts)
    assert w.shape == (10,) and (w > 0).all()
    assert w.sum().item() == pytest.approx(1.0)
    # mass concentrates around exp(P_mean) ~ 0.33, not at the ends (the sign of P_mean matters)
    centre = int(torch.argmax(w))
    assert ts[centre] < math.exp(-1.1) * 10 and ts[centre + 1] > math.exp(-1.1) / 10
    w_wrong = lognormal_index_weights(ts, p_mean=1.1)
    assert (w_wrong * torch.log(ts[1:])).sum() > (w * torch.log(ts[1:])).sum()
