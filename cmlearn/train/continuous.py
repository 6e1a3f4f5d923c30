"""The continuous-time kinds of a config: sCT / sCD (``cmlearn.core.scm``) and MeanFlow (``cmlearn.core.meanflow``).

``continuous_model`` wraps the backbone (TrigFlow's f_theta with its weighting w_phi, or MeanFlow's u_theta),
``continuous_loss`` builds the objective from the config; ``cmlearn.train.runs`` and ``cmlearn.train.loop`` call
them for ``cfg.kind in CONTINUOUS``.
"""

from __future__ import annotations

from torch import nn

from cmlearn.train.config import TrainConfig


def continuous_model(cfg: TrainConfig, net: nn.Module) -> nn.Module:
    """TrigFlowFunction (sct, scd) or MeanFlowModel (meanflow) around ``net``."""
    if cfg.kind == "meanflow":
        from cmlearn.core.meanflow import MeanFlowModel

        if getattr(net, "n_times", 2) != 2:
            raise ValueError(f"MeanFlow conditions on (t, t - r): the net needs n_times=2 in net_kwargs, got "
                             f"n_times={net.n_times}")
        return MeanFlowModel(net)
    from cmlearn.core.scm import TrigFlowFunction

    return TrigFlowFunction(net, sigma_data=cfg.sigma_data, eps=cfg.eps, T=cfg.T, time_dtype=cfg.time_dtype,
                            time_input=cfg.time_input)


def continuous_loss(cfg: TrainConfig, teacher=None):
    """SCMLoss (sct: no teacher; scd: the config's teacher denoiser) or MeanFlowLoss, from the config's keys."""
    if cfg.kind == "meanflow":
        from cmlearn.core.meanflow import MeanFlowLoss

        return MeanFlowLoss(sampler=cfg.mf_times, p_mean=cfg.p_mean, p_std=cfg.p_std, ratio=cfg.mf_ratio,
                            adaptive_p=cfg.mf_adaptive_p, stable_target=cfg.stable_target)
    from cmlearn.core.scm import SCMLoss

    if cfg.kind == "scd" and teacher is None:
        raise ValueError("kind 'scd' needs a teacher denoiser (teacher=exact|empirical|RUN_DIR)")
    return SCMLoss(teacher if cfg.kind == "scd" else None, sigma_data=cfg.sigma_data, p_mean=cfg.p_mean,
                   p_std=cfg.p_std, tangent_norm=cfg.tangent_norm, warmup=cfg.tangent_warmup,
                   adaptive=cfg.adaptive_weight, eps=cfg.eps, T=cfg.T, stable_target=cfg.stable_target)
