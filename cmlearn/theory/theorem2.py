"""Theorem 2, checked: with Euler and the exact score, L_CD = L_CT + o(dt); their gradients agree (Sec. 5).

For one fixed network f_theta (theta- = theta, stop-gradient target, squared l2, lambda = 1) we estimate both
losses and their parameter gradients on the SAME draws (x, n, z) with large batches, at growing N:

- CD (Alg. 2):  d(f(x + t_{n+1} z, t_{n+1}), f(x_hat, t_n)), x_hat = Euler step with the exact score;
- CT (Alg. 3):  d(f(x + t_{n+1} z, t_{n+1}), f(x + t_n z, t_n)).

Both targets differ from the online point by O(dt); Lemma 1 says E[z | x_{t_{n+1}}] = -t_{n+1} s(x_{t_{n+1}}),
so CT's target is CD's plus zero-mean noise: to first order in dt the gradients agree in expectation, while
the loss values differ by the noise's variance, a term of order dt^2. In a finite batch of M samples that
noise leaves a relative gradient difference that does not shrink with N but does with M (like M^{-1/2}).
Averaging CT's target over z given x_{t_{n+1}} (exact Gaussian-mixture posterior, Gauss-Hermite quadrature)
removes that noise without changing the expectation; what is left is the true gap E g_CT - E g_CD, whose size
relative to |g_CD| falls like dt. A deliberately wrong teacher (``teacher=``) makes it plateau instead.
The package's own CDLoss and CTLoss compute both, fed identical generators (common random numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cmlearn.core.distributions import Distribution, GaussianMixture
from cmlearn.core.losses import CDLoss, CTLoss
from cmlearn.core.pfode import Field
from cmlearn.core.schedules import EPS, T_MAX, karras_sigmas
from cmlearn.theory.orders import fit_order


def fixed_network(*, dim: int = 2, width: int = 32, depth: int = 2, seed: int = 0) -> nn.Module:
    """A randomly initialised float64 consistency model f_theta (MLP backbone, (B, dim) -> (B, dim)) for Theorem 2."""
    from cmlearn.core.parameterization import ConsistencyFunction
    from cmlearn.nets.mlp import MLP

    torch.manual_seed(seed)
    return ConsistencyFunction(MLP(dim, width=width, depth=depth, emb_dim=32)).double()


def _losses(dist: Distribution, N: int, *, eps: float, T: float, teacher: Field | None = None):
    def exact(x, t):
        return dist.denoiser(x, t)

    cd = CDLoss(teacher or exact, N=N, solver="euler", mu=0.0, distance="l2", eps=eps, T=T)
    ct = CTLoss(K=1, N=N, mu=0.0, distance="l2", eps=eps, T=T)
    return cd, ct


def _flat_grad(loss: torch.Tensor, params: list, *, retain: bool) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def posterior_quadrature(dist: GaussianMixture, x: torch.Tensor, t: torch.Tensor, *,
                         order: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes (B, K Q, d) and weights (B, K Q) of a quadrature of p(x_0 | x_t = x) (Lemma 1's posterior, Theorem 2).

    The posterior is a mixture (``GaussianMixture.posterior``); each component gets a tensor Gauss-Hermite rule
    of ``order`` points per dimension (exact for polynomials of degree 2 order - 1). The weighted mean of the
    nodes is the denoiser E[x_0 | x_t].
    """
    import numpy as np

    if order < 1:
        raise ValueError(f"order must be >= 1, got order={order}")
    B, d = x.shape
    post = dist.posterior(x, t)
    z1, w1 = np.polynomial.hermite_e.hermegauss(order)
    mesh = np.meshgrid(*([z1] * d), indexing="ij")
    zq = torch.tensor(np.stack([m.ravel() for m in mesh], 1), dtype=x.dtype, device=x.device)  # (Q, d)
    wq = np.prod(np.meshgrid(*([w1 / w1.sum()] * d), indexing="ij"), 0).ravel()
    nodes = post.means[:, :, None, :] + (post.roots()[:, :, None] @ zq[None, None, :, :, None])[..., 0]  # (B,K,Q,d)
    weights = post.log_weights.exp()[:, :, None] * torch.tensor(wq, dtype=x.dtype, device=x.device)[None, None]
    return nodes.reshape(B, -1, d), weights.reshape(B, -1)


@torch.no_grad()
def conditional_ct_target(model: nn.Module, dist: GaussianMixture, x_next: torch.Tensor, t_next: torch.Tensor,
                          t_cur: torch.Tensor, *, order: int = 2) -> torch.Tensor:
    """E[f(x_{t_n}, t_n) | x_{t_{n+1}}] (B, d): CT's target (Alg. 3) averaged over z given x_{t_{n+1}} (B, d).

    With x_{t_{n+1}} = x + t_{n+1} z, CT's point is x_{t_n} = x + t_n z = (t_n/t_{n+1}) x_{t_{n+1}} +
    (1 - t_n/t_{n+1}) x: an affine function of x ~ p(x | x_{t_{n+1}}), integrated by ``posterior_quadrature``.
    """
    nodes, w = posterior_quadrature(dist, x_next, t_next, order=order)
    Q, d = nodes.shape[1], nodes.shape[2]
    a = (t_cur / t_next)[:, None, None]
    pts = a * x_next[:, None, :] + (1 - a) * nodes
    f = model(pts.reshape(-1, d), t_cur.repeat_interleave(Q)).reshape(len(x_next), Q, d)
    return (w[..., None] * f).sum(1)


def loss_and_grads(model: nn.Module, dist: Distribution, *, N: int, M: int, seed: int = 0, chunk: int = 50_000,
                   eps: float = EPS, T: float = T_MAX, conditional: bool = False, order: int = 2,
                   teacher: Field | None = None) -> dict:
    """L_CD, L_CT (Alg. 2, 3) and their flattened gradients (P,) over M shared draws (x, n, z), in chunks.

    Common random numbers: CDLoss and CTLoss get identical generator states, so they draw the same index n and
    the same z. ``conditional=True`` adds ``g_ct_cond``, the gradient of CT's loss with its target averaged over
    z given x_{t_{n+1}} (``conditional_ct_target``): the same expectation as g_CT (the tower rule) without the
    zero-mean noise of z; it needs a GaussianMixture. ``teacher`` replaces CD's exact denoiser (a deliberately
    wrong teacher is the control).
    """
    if M < 1:
        raise ValueError(f"M must be >= 1, got M={M}")
    cd, ct = _losses(dist, N, eps=eps, T=T, teacher=teacher)
    params = [p for p in model.parameters() if p.requires_grad]
    dtype = params[0].dtype
    gen_x = torch.Generator().manual_seed(seed)
    sums = {"loss_cd": 0.0, "loss_ct": 0.0, "g_cd": 0.0, "g_ct": 0.0}
    if conditional:
        sums["g_ct_cond"] = 0.0
    for start in range(0, M, chunk):
        m = min(chunk, M - start)
        x0 = dist.sample(m, generator=gen_x).to(dtype)
        draws = torch.Generator().manual_seed(seed * 7919 + start + 1)
        state = draws.get_state()
        # identical generator states: CDLoss and CTLoss draw the same index n, then the same z
        l_cd = cd(model, model, x0, generator=torch.Generator().set_state(state))
        l_ct = ct(model, model, x0, generator=torch.Generator().set_state(state))
        sums["loss_cd"] += float(l_cd.detach().sum())
        sums["loss_ct"] += float(l_ct.detach().sum())
        sums["g_cd"] = sums["g_cd"] + _flat_grad(l_cd.sum(), params, retain=False)
        sums["g_ct"] = sums["g_ct"] + _flat_grad(l_ct.sum(), params, retain=False)
        if conditional:  # the same n and x_{t_{n+1}}, drawn the way CTLoss draws them
            g = torch.Generator().set_state(state)
            ts = ct.grid(0)
            i = ct.sample_index(ts, m, g)
            t_cur, t_next = ts[i].to(dtype), ts[i + 1].to(dtype)
            x_next, _ = ct.pair(x0, t_next, t_cur, g)
            target = conditional_ct_target(model, dist, x_next, t_next, t_cur, order=order)
            l_cond = ct.d(model(x_next, t_next), target)
            sums["g_ct_cond"] = sums["g_ct_cond"] + _flat_grad(l_cond.sum(), params, retain=False)
    return {k: v / M for k, v in sums.items()}


def compare(res: dict, key: str = "g_ct") -> dict:
    """Cosine and relative difference |g - g_CD| / |g_CD| of two (P,) gradients, g = res[key] (Theorem 2)."""
    g_cd, g = res["g_cd"], res[key]
    return {"cosine": float(torch.nn.functional.cosine_similarity(g_cd, g, dim=0)),
            "rel_diff": float((g - g_cd).norm() / g_cd.norm())}


def theorem2_vs_N(model: nn.Module, dist: Distribution, *, Ns: Sequence[int] = (10, 20, 40, 80, 160, 320),
                  M: int = 40_000, M_cond: int = 4000, seed: int = 0, eps: float = EPS, T: float = T_MAX,
                  order: int = 2, teacher: Field | None = None) -> dict:
    """Theorem 2 against N: losses, their difference, gradient agreement; ``order_*`` is p in value ~ C N^-p.

    Two gradient comparisons with CD's: the plain CT estimate over the same M draws (``cosine``, ``rel_diff``: a
    Monte Carlo floor that does not shrink with N), and CT's gradient with z averaged out given x_{t_{n+1}}
    over M_cond draws (``cosine_cond``, ``rel_cond``: what is left is the true gap E g_CT - E g_CD, which
    Theorem 2 says is of relative order dt; ``order_rel_cond`` should be about 1). ``M_cond = 0`` skips it.
    ``dt`` is Theorem 2's max_n (t_{n+1} - t_n) of each grid (it falls like 1/N on the Karras grid). ``M_cond``
    needs a GaussianMixture.
    """
    out: dict = {"Ns": [int(N) for N in Ns], "M": M, "M_cond": M_cond, "dt": [], "loss_cd": [], "loss_ct": [],
                 "diff": [], "cosine": [], "rel_diff": [], "cosine_cond": [], "rel_cond": []}
    for N in out["Ns"]:
        ts = karras_sigmas(N, eps=eps, T=T)
        res = loss_and_grads(model, dist, N=N, M=M, seed=seed, eps=eps, T=T, teacher=teacher)
        cmp = compare(res)
        out["dt"].append(float((ts[1:] - ts[:-1]).max()))
        out["loss_cd"].append(res["loss_cd"])
        out["loss_ct"].append(res["loss_ct"])
        out["diff"].append(res["loss_ct"] - res["loss_cd"])
        out["cosine"].append(cmp["cosine"])
        out["rel_diff"].append(cmp["rel_diff"])
        if M_cond:
            res = loss_and_grads(model, dist, N=N, M=M_cond, seed=seed + 1, eps=eps, T=T, conditional=True,
                                 order=order, teacher=teacher)
            cmp = compare(res, "g_ct_cond")
            out["cosine_cond"].append(cmp["cosine"])
            out["rel_cond"].append(cmp["rel_diff"])
    out["order_cd"] = fit_order(out["Ns"], out["loss_cd"])
    out["order_ct"] = fit_order(out["Ns"], out["loss_ct"])
    out["order_diff"] = fit_order(out["Ns"], [abs(d) for d in out["diff"]])
    if M_cond:
        out["order_rel_cond"] = fit_order(out["Ns"], out["rel_cond"])
    return out


def gradient_floor_vs_M(model: nn.Module, dist: Distribution, *, N: int = 40,
                        Ms: Sequence[int] = (2500, 10_000, 40_000), repeats: int = 3, seed: int = 0) -> dict:
    """Theorem 2's Monte Carlo floor: |g_CT - g_CD| at fixed N against the batch size M, with its fitted slope.

    Relative to one reference |g_CD| pooled over every batch (a small batch's own |g_CD| is inflated by its
    noise, which would flatten the curve). A pure Monte Carlo floor (no bias) has slope -1/2; ``predicted`` is
    sqrt(tr Cov / M) / |g_CD| from the per-sample covariance of the difference. RMS over ``repeats`` seeds.
    """
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2, got repeats={repeats}")
    Ms = [int(M) for M in Ms]
    diffs: dict[int, list] = {M: [] for M in Ms}
    g_sum, m_sum, cos = 0.0, 0, {M: [] for M in Ms}
    for M in Ms:
        for r in range(repeats):
            res = loss_and_grads(model, dist, N=N, M=M, seed=seed + 1000 * r + M)
            diffs[M].append(res["g_ct"] - res["g_cd"])
            cos[M].append(compare(res)["cosine"])
            g_sum, m_sum = g_sum + M * res["g_cd"], m_sum + M
    g_ref = float((g_sum / m_sum).norm())
    rms = [float(torch.stack(diffs[M]).pow(2).sum(1).mean().sqrt()) for M in Ms]
    # per-sample trace covariance of the difference, from the spread of the batch means: tr Cov_1 = M tr Cov_M
    tr1 = sum(M * float(torch.stack(diffs[M]).var(0, unbiased=True).sum()) for M in Ms) / len(Ms)
    return {"N": N, "Ms": Ms, "rel_diff": [v / g_ref for v in rms],
            "cosine": [sum(c) / repeats for c in cos.values()],
            "predicted": [(tr1 / M) ** 0.5 / g_ref for M in Ms], "slope": -fit_order(Ms, rms), "g_ref": g_ref}


def mean_difference(model: nn.Module, dist: Distribution, *, N: int = 40, M: int = 10_000, batches: int = 8,
                    seed: int = 0) -> dict:
    """Is E[g_CT - g_CD] zero (Theorem 2)? The mean difference over independent batches against its noise.

    ``ratio`` = ||mean diff||^2 / (tr Cov / batches): about 1 when the difference is pure noise (no bias),
    much larger when there is a systematic gap. ``rel_mean`` = ||mean diff|| / ||mean g_CD||.
    """
    if batches < 2:
        raise ValueError(f"batches must be >= 2, got batches={batches}")
    diffs, g_cds = [], []
    for b in range(batches):
        res = loss_and_grads(model, dist, N=N, M=M, seed=seed + 1 + b)
        diffs.append(res["g_ct"] - res["g_cd"])
        g_cds.append(res["g_cd"])
    D = torch.stack(diffs)
    mean = D.mean(0)
    noise = float(D.var(0, unbiased=True).sum()) / batches
    return {"N": N, "M": M, "batches": batches, "ratio": float(mean.pow(2).sum()) / noise,
            "rel_mean": float(mean.norm() / torch.stack(g_cds).mean(0).norm()),
            "rel_single": float(D.norm(dim=1).mean() / torch.stack(g_cds).mean(0).norm())}
