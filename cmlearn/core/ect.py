"""Easy Consistency Tuning (ECT): a pretrained diffusion model tuned into a consistency model with a shrinking dt.

Source: Z. Geng, A. Pokle, W. Luo, J. Lin, J. Z. Kolter, "Consistency Models Made Easy", ICLR 2025
(arXiv 2406.14548), and its code locuslab/ect (training/loss.py ``ECMLoss``, ct_train.py, run_ecm.sh,
run_ecm_1hour.sh). The network starts from the teacher's (EDM) weights; there is no teacher at training time.

* Consistency condition on the PF ODE, discretised between t and r < t: f(x_t, t) = f(x_r, r), with the SAME noise
  at both times (consistency training): x_t = x + t z, x_r = x + r z, z ~ N(0, I).
* t ~ lognormal: log t ~ N(P_mean, P_std^2), P_mean = -1.1, P_std = 2.0 (iCT's values).
* The mapping r(t) that shrinks dt = t - r over training stages ("continuous r(t) schedule"):

      r = max(t (1 - n(t) / q^(a + 1)), 0),   n(t) = 1 + k sigmoid(-b t),   a = floor(step / d)

  k = 8, b = 1, q = 2; a is the stage, advancing every d iterations (run_ecm.sh: batch 128, 200k iterations,
  a new stage every 25k, so dt / t falls from about 1/2 to 1/256; the one-A100-hour run, run_ecm_1hour.sh, uses
  q = 256 and never advances the stage). At stage 0 and small t the factor is negative, r = 0 and the target is
  the data itself: diffusion training is the first stage, which is why a diffusion model is the right start.
* Target f_{stopgrad(theta)}(x_r, r) (no EMA teacher), with the online pass's dropout mask.
* Loss per sample w(t, r) d(f_theta(x_t, t), f_{stopgrad theta}(x_r, r)) with w(t, r) = 1 / (t - r) and
  d the pseudo-Huber sqrt(||.||^2 + c^2) - c (the code's "adaptive weighting through a Huber loss"; its CIFAR-10
  default c = 0 makes d the plain l2 norm; cmlearn's pseudo_huber uses iCT's c = 0.00054 sqrt(dim)).
  (The code's later revision replaced 1 / (t - r) by (t^2 + sd^2) / (t sd)^2 = SNR(t) + 1 / sd^2, training/loss.py
  ``snrpk_wt``; the paper's and the first code's 1 / (t - r) is the default here, ``weighting="dt"``; ``"snr"`` is
  the later one, and ``"dt_stage"`` is 1 / (t - r) divided by q^(a + 1), its growth per stage, so that the
  gradient's scale stays put while Adam's second moment averages over about 1000 steps: cmlearn's option, tried on
  digits in the README, not ECT's.)
* CIFAR-10 hyperparameters (run_ecm.sh): RAdam, lr 1e-4, batch 128, dropout 0.2, no augmentation, EMA 0.9999
  (0.9993 in the one-hour run); 2-step FID 2.73 after about one A100-hour (q = 256), 2.11 after 400k iterations.

cmlearn's consistency function has the boundary at eps = 0.002 (f(x, eps) = x), not at 0, so here t is drawn
from the lognormal truncated to [eps, T] (it falls outside with probability 0.8%) and r is clamped at eps, where
the target is x_eps = x + eps z exactly. ECT's own code clamps r at 0 and trains with the unshifted EDM
c_skip, c_out (its ECMPrecond), switching to the eps-shifted ones for sampling; the two agree up to eps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cmlearn.core.losses import _paired, make_distance
from cmlearn.core.parameterization import SIGMA_DATA, append_dims
from cmlearn.core.schedules import EPS, T_MAX, check_time_range
from cmlearn.core.stable_target import stable_ve_point

ECT_Q, ECT_K, ECT_B = 2.0, 8.0, 1.0
WEIGHTINGS = ("dt", "dt_stage", "snr")
P_MEAN, P_STD = -1.1, 2.0


def ect_stage(step: int, stage_steps: int, *, short_stages: int = 0, short_steps: int = 0) -> int:
    """ECT's stage a = floor(step / d); with ``short_stages`` > 0 the first that many stages last ``short_steps``
    each and the later ones d (cmlearn's option, not ECT's: on a short run the first, coarse stages are learned
    quickly, see the digits-ect preset)."""
    if stage_steps < 1 or short_stages < 0 or (short_stages > 0 and short_steps < 1):
        raise ValueError(f"need stage_steps >= 1, short_stages >= 0 and short_steps >= 1 when short_stages > 0, got "
                         f"stage_steps={stage_steps}, short_stages={short_stages}, short_steps={short_steps}")
    step, head = max(int(step), 0), short_stages * short_steps
    if step < head:
        return step // short_steps
    return short_stages + (step - head) // int(stage_steps)


def ect_r(t: torch.Tensor, stage: int, *, q: float = ECT_Q, k: float = ECT_K, b: float = ECT_B,
          r_min: float = 0.0) -> torch.Tensor:
    """r(t) = max(t (1 - (1 + k sigmoid(-b t)) / q^(stage + 1)), r_min): the mapping that shrinks dt by q per stage."""
    n = 1.0 + k * torch.sigmoid(-b * t)
    return (t * (1.0 - n / q ** (stage + 1))).clamp(min=r_min)


def truncated_lognormal(n: int, *, p_mean: float = P_MEAN, p_std: float = P_STD, lo: float = EPS, hi: float = T_MAX,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws of t with log t ~ N(p_mean, p_std^2) conditioned on lo <= t <= hi (inverse-CDF), float64 (n,)."""
    a, b = (math.log(lo) - p_mean) / p_std, (math.log(hi) - p_mean) / p_std
    cdf = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    u = cdf(a) + (cdf(b) - cdf(a)) * torch.rand(n, generator=generator, dtype=torch.float64)
    z = math.sqrt(2) * torch.special.erfinv((2 * u - 1).clamp(-1 + 1e-15, 1 - 1e-15))
    return torch.exp(p_mean + p_std * z).clamp(lo, hi)


class ECTLoss:
    """ECT's loss (see the module docstring), called like the other losses: ``loss(model, target, x0, k=step,
    generator=g, reference=None)`` -> (B,). ``stage_steps`` is d, the iterations per stage (after ``short_stages``
    stages of ``short_steps``, see ``ect_stage``). ``mu = 0``: the online network is its own stop-gradient target.
    ``stable_target`` (not in ECT) moves x + r z one Euler step of the batch's score from x + t z
    (``cmlearn.core.stable_target.stable_ve_point``), as ``CTLoss`` does."""

    def __init__(self, *, stage_steps: int, q: float = ECT_Q, k: float = ECT_K, b: float = ECT_B,
                 p_mean: float = P_MEAN, p_std: float = P_STD, distance: str = "pseudo_huber", eps: float = EPS,
                 T: float = T_MAX, huber_c: float = 0.0, short_stages: int = 0, short_steps: int = 0,
                 stable_target: bool = False, weighting: str = "dt", sigma_data: float = SIGMA_DATA):
        check_time_range(eps=eps, T=T)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting, self.sigma_data = weighting, float(sigma_data)
        self.stable_target = bool(stable_target)
        ect_stage(0, stage_steps, short_stages=short_stages, short_steps=short_steps)
        self.short = dict(short_stages=int(short_stages), short_steps=int(short_steps))
        if not q > 1 or p_std <= 0:
            raise ValueError(f"need q > 1 and p_std > 0, got q={q}, p_std={p_std}")
        self.d = make_distance(distance, huber_c=huber_c)
        self.stage_steps, self.q, self.k, self.b = int(stage_steps), float(q), float(k), float(b)
        self.p_mean, self.p_std, self.eps, self.T, self.mu = p_mean, p_std, eps, T, 0.0

    def num_steps(self, k: int) -> int:
        """q^(a+1), the factor by which dt / t has shrunk at step k (logged in the N column; a Karras grid with
        this many points has dt / t of the same order)."""
        return int(round(self.q ** (self.stage(k) + 1)))

    def stage(self, k: int) -> int:
        """The stage a at step k."""
        return ect_stage(k, self.stage_steps, **self.short)

    def target_decay(self, k: int) -> float:
        return 0.0

    def times(self, n: int, k: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, r), float64 (n,): t lognormal on [eps, T], r = r(t) at step k's stage, clamped at eps."""
        t = truncated_lognormal(n, p_mean=self.p_mean, p_std=self.p_std, lo=self.eps, hi=self.T, generator=generator)
        r = ect_r(t, self.stage(k), q=self.q, k=self.k, b=self.b, r_min=self.eps)
        return t, torch.minimum(r, t)

    def __call__(self, model: nn.Module, target: nn.Module, x0: torch.Tensor, *, k: int = 0,
                 generator: torch.Generator | None = None, reference: torch.Tensor | None = None) -> torch.Tensor:
        """d(f_theta(x + t z, t), f_theta-(x + r z, r)) / (t - r) per sample (B,); ``reference`` (M, ...): extra
        data points for the stable target's posterior mean (ignored without stable_target; a shape other than
        (M, *x0.shape[1:]) raises ValueError in ``batch_posterior_mean``)."""
        t, r = self.times(x0.shape[0], k, generator)
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        dt = (t - r).clamp(min=1e-12).to(device=x0.device, dtype=x0.dtype)
        t, r = t.to(device=x0.device, dtype=x0.dtype), r.to(device=x0.device, dtype=x0.dtype)
        if self.stable_target:
            x_r = stable_ve_point(x0, z, t, r, reference=reference)
        else:
            x_r = x0 + append_dims(r, x0.ndim) * z
        out, tgt = _paired(model, target, x0 + append_dims(t, x0.ndim) * z, t, x_r, r)
        loss = self.d(out, tgt.to(out.dtype))
        if self.weighting == "snr":  # (t^2 + sd^2) / (t sd)^2
            return loss * (t**2 + self.sigma_data**2) / (t * self.sigma_data) ** 2
        return loss / dt if self.weighting == "dt" else loss / dt / self.q ** (self.stage(k) + 1)
