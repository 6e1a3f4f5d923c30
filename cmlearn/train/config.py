"""The training configuration: one flat dataclass for every preset, with ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from cmlearn.core.meanflow import P_MEAN as MF_P_MEAN
from cmlearn.core.meanflow import P_STD as MF_P_STD
from cmlearn.core.meanflow import TIME_SAMPLERS as MF_TIMES
from cmlearn.core.parameterization import SIGMA_DATA
from cmlearn.core.schedules import EPS, RHO, T_MAX
from cmlearn.core.scm import TIME_DTYPES, TIME_INPUTS

KINDS = ("edm", "cd", "ct", "ict", "pd", "ect", "sct", "scd", "meanflow")
SWITCH = ("auto", "true", "false")
CONTINUOUS = ("sct", "scd", "meanflow")  # continuous-time kinds: sCM (cmlearn.core.scm), MeanFlow (core.meanflow)
ONLY_FOR = {
    "teacher": ("cd", "pd", "scd"), "N": ("cd",), "solver": ("cd",), "mu": ("cd",),
    "K": ("ct", "ict"), "s0": ("ct", "ict"), "s1": ("ct", "ict"), "ct_fixed_N": ("ct", "ict"),
    "mu0": ("ct",), "official_mu": ("ct",), "ct_fixed_mu": ("ct",),
    "p_mean": ("ict", "ect", *CONTINUOUS), "p_std": ("ict", "ect", *CONTINUOUS),
    "distance": ("cd", "ct", "ict", "ect"), "huber_c": ("cd", "ct", "ict", "ect"),
    "weighting": ("cd", "ct", "ict"), "pd_nfe": ("pd",), "pd_start": ("pd",),
    "ect_q": ("ect",), "ect_stage_steps": ("ect",), "ect_short_stages": ("ect",), "ect_short_steps": ("ect",),
    "ect_weighting": ("ect",),
    "tangent_norm": ("sct", "scd"), "tangent_warmup": ("sct", "scd"), "adaptive_weight": ("sct", "scd"),
    "time_dtype": ("sct", "scd"), "time_input": ("sct", "scd"),
    "mf_ratio": ("meanflow",), "mf_adaptive_p": ("meanflow",), "mf_times": ("meanflow",),
    "stable_target": ("edm", "ct", "ict", "ect", "sct", "meanflow"), "stable_ref": ("edm", "ct", "ict", "ect"),
}
"""Keys that only some kinds read: set to anything but the default on another kind, they stop the run (an option
that is accepted and then ignored is a bug the user never sees)."""

ADDED_KEYS = {"pd_nfe": 1, "pd_start": 0, "ect_q": 2.0, "ect_stage_steps": 0, "ect_short_stages": 0,
              "ect_short_steps": 0, "tangent_norm": 0.1, "tangent_warmup": 0,
              "adaptive_weight": True, "time_dtype": "float32", "mf_ratio": 0.25, "huber_c": 0.0,
              "mf_adaptive_p": 1.0, "time_input": "t", "mf_times": "logit_normal",
              "stable_target": False, "stable_ref": 0, "ect_weighting": "dt"}
"""Keys added after runs were cached and shipped, with their defaults: ``cmlearn.train.cache.config_key`` leaves
them out of the hash at these values, so adding a key does not orphan every existing run."""


@dataclass
class TrainConfig:
    """Everything a run needs; presets (cmlearn.train.presets) fill it, the command line overrides single keys."""

    preset: str = ""
    kind: str = "cd"  # edm | cd | ct | ict | pd | ect | sct | scd | meanflow
    data: str = "eight_gaussians"  # a 2D preset name, "file:PATH.npy", "digits" or "cifar10"
    data_root: str = ""  # CIFAR-10 root (holds cifar-10-batches-py/)
    teacher: str = "exact"  # CD: exact | empirical | a toy-edm RUN_DIR; PD: an edm (or pd) RUN_DIR
    net: str = "mlp"  # mlp | unet | ncsnpp
    net_kwargs: dict = field(default_factory=dict)
    steps: int = 4000
    batch_size: int = 512
    grad_accum: int = 1  # micro-batches per step on each rank (at least; see micro_batch)
    micro_batch: int = 0  # largest forward pass per rank (0: no limit); grad_accum grows to fit it
    lr: float = 1e-3
    optimizer: str = "radam"  # radam | adam
    lr_schedule: str = "constant"  # constant | cosine | linear
    lr_final: float = 0.0  # final lr as a fraction of lr (cosine/linear)
    warmup: int = 0
    grad_clip: float = 0.0
    ema_decay: float = 0.999  # eval EMA of weights
    N: int = 18  # CD grid size (and CT's fixed N when ct_fixed_N is set)
    solver: str = "heun"
    mu: float = 0.0  # CD target decay
    distance: str = "l2"
    huber_c: float = 0.0  # pseudo-Huber's c (0: iCT's 0.00054 sqrt(dim)); distance pseudo_huber only
    weighting: str = "uniform"  # uniform | ict (lambda = 1 / (t_{n+1} - t_n))
    K: int = 0  # curriculum length for CT/iCT (0: = steps)
    s0: int = 0  # curriculum start (0: the loss's default, 2 for CT, 10 for iCT)
    s1: int = 0  # curriculum end (0: default, 150 for CT, 1280 for iCT)
    mu0: float = 0.9
    official_mu: bool = False
    ct_fixed_N: int = 0  # CT with a fixed N (0: the N(k) curriculum)
    ct_fixed_mu: float = -1.0  # CT with a fixed target decay (< 0: the mu(k) curriculum)
    p_mean: float = -1.1  # iCT lognormal index sampling
    p_std: float = 2.0
    pd_nfe: int = 1  # PD: the student's DDIM steps (of the last round); its teacher takes twice as many
    pd_start: int = 0  # PD: the teacher's DDIM steps in the first round (pd_nfe times a power of 2; 0: 2 pd_nfe)
    ect_q: float = 2.0  # ECT: dt / t shrinks by q per stage (cmlearn.core.ect)
    ect_stage_steps: int = 0  # ECT: iterations per stage (0: steps / 8, so 8 stages)
    ect_short_stages: int = 0  # ECT: this many first stages last ect_short_steps each (then ect_stage_steps each)
    ect_short_steps: int = 0  # ECT: iterations of each of the first ect_short_stages stages
    ect_weighting: str = "dt"  # ECT's loss weight: dt 1/(t - r) | dt_stage 1/(t - r) / q^(a+1) | snr 1/t^2 + 1/sd^2
    tangent_norm: float = 0.1  # sCM: g <- g / (||g|| + c), this c (0: no tangent normalization)
    tangent_warmup: int = 0  # sCM: iterations over which the tangent's second term ramps from 0 to 1 (0: none)
    adaptive_weight: bool = True  # sCM: the learned weighting w_phi(t) (loss e^w / D ||.||^2 - w)
    time_dtype: str = "float32"  # sCM: precision of the network's time input (float16 shows the instability)
    time_input: str = "t"  # sCM: the network's time input c_noise(t): t | log_tan (log(sigma / sd) / 4)
    mf_ratio: float = 0.25  # MeanFlow: fraction of samples with r != t
    mf_adaptive_p: float = 1.0  # MeanFlow: loss ||D||^2 / sg(||D||^2 + c)^p, this p (0: plain l2)
    mf_times: str = "logit_normal"  # MeanFlow: how (r, t) are drawn: logit_normal (p_mean, p_std) | uniform
    stable_target: bool = False  # EDM, CT, iCT, ECT, sCT, MeanFlow: the batch's posterior mean of x in the target
    stable_ref: int = 0  # EDM, CT, iCT, ECT with stable_target: this many more data points per step join its batch
    sigma_data: float = SIGMA_DATA
    eps: float = EPS
    T: float = T_MAX
    rho: float = RHO
    init_from: str = ""  # RUN_DIR whose EMA weights initialise the network; "teacher": CD starts from its teacher
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 100
    amp: str = "auto"  # bf16 autocast: auto (on for image nets on CUDA) | true | false
    compile: str = "auto"  # torch.compile: auto (on for image nets on CUDA) | true | false
    channels_last: str = "auto"  # auto (on for image nets on CUDA) | true | false
    tf32: bool = True
    device: str = "auto"  # auto | cpu | cuda (this rank's GPU) | cuda:K | mps

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; choose one of {KINDS}")
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {name}={getattr(self, name)}")
        if not 0 < self.eps < self.T:
            raise ValueError(f"need 0 < eps < T, got eps={self.eps}, T={self.T}")
        if self.N < 2:
            raise ValueError(f"N must be >= 2, got N={self.N}")
        if not 0 <= self.mu < 1 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"mu and ema_decay must be in [0, 1), got mu={self.mu}, ema_decay={self.ema_decay}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got lr={self.lr}")
        if self.lr_schedule not in ("constant", "cosine", "linear"):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}")
        if self.optimizer not in ("radam", "adam"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose 'radam' or 'adam'")
        for name in ("amp", "compile", "channels_last"):
            if getattr(self, name) not in SWITCH:
                raise ValueError(f"{name} must be one of {SWITCH}, got {name}={getattr(self, name)!r}")
        if self.micro_batch < 0:
            raise ValueError(f"micro_batch must be >= 0 (0: no limit), got micro_batch={self.micro_batch}")
        if self.kind == "pd":
            start = self.pd_start or 2 * self.pd_nfe
            if self.pd_nfe < 1 or start <= self.pd_nfe or start % self.pd_nfe or (start // self.pd_nfe) & (
                    start // self.pd_nfe - 1):
                raise ValueError(f"PD needs pd_nfe >= 1 and pd_start = pd_nfe x a power of 2 (> 1), got "
                                 f"pd_nfe={self.pd_nfe}, pd_start={self.pd_start}")
        if self.kind == "ect" and (not self.ect_q > 1 or self.ect_stage_steps < 0 or self.ect_short_stages < 0
                                   or (self.ect_short_stages > 0) != (self.ect_short_steps > 0)):
            raise ValueError(f"ECT needs ect_q > 1, ect_stage_steps >= 0 and ect_short_stages, ect_short_steps both 0 "
                             f"or both >= 1, got ect_q={self.ect_q}, ect_stage_steps={self.ect_stage_steps}, "
                             f"ect_short_stages={self.ect_short_stages}, ect_short_steps={self.ect_short_steps}")
        if self.tangent_norm < 0 or self.tangent_warmup < 0 or self.time_dtype not in TIME_DTYPES \
                or self.time_input not in TIME_INPUTS or self.mf_adaptive_p < 0:
            raise ValueError(f"need tangent_norm >= 0, tangent_warmup >= 0, time_dtype in {sorted(TIME_DTYPES)}, "
                             f"time_input in {TIME_INPUTS}, mf_adaptive_p >= 0, got {self.tangent_norm}, "
                             f"{self.tangent_warmup}, {self.time_dtype!r}, {self.time_input!r}, {self.mf_adaptive_p}")
        if self.huber_c < 0 or (self.huber_c > 0 and self.distance != "pseudo_huber"):
            raise ValueError(f"huber_c={self.huber_c} needs huber_c >= 0 and distance='pseudo_huber' (it is "
                             f"pseudo-Huber's c), got distance={self.distance!r}")
        if not 0 <= self.mf_ratio <= 1:
            raise ValueError(f"mf_ratio must be in [0, 1], got mf_ratio={self.mf_ratio}")
        if self.mf_times not in MF_TIMES:
            raise ValueError(f"mf_times must be one of {MF_TIMES}, got mf_times={self.mf_times!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} must be divisible by grad_accum={self.grad_accum}")
        per_pass = min(self.batch_size // self.grad_accum, self.micro_batch or self.batch_size)
        if self.stable_target and per_pass < 2:
            raise ValueError(f"stable_target=true averages over the points of one forward pass, and batch_size="
                             f"{self.batch_size}, grad_accum={self.grad_accum}, micro_batch={self.micro_batch} leave "
                             f"{per_pass}: the estimate would be the point itself; use a larger batch")
        self._check_unused()  # first: a key this kind ignores is named as such, before what it would need
        if self.stable_ref < 0 or (self.stable_ref and not self.stable_target):
            raise ValueError(f"stable_ref={self.stable_ref} needs stable_ref >= 0 and stable_target=true (it adds "
                             f"reference points to the stable target's posterior mean); to turn the stable target "
                             f"off, pass stable_target=false stable_ref=0")

    def _check_unused(self) -> None:
        """Refuse settings that this kind, data or schedule would silently ignore, naming the key."""
        defaults = TrainConfig.__new__(TrainConfig)
        for f in dataclasses.fields(self):
            if f.default is not dataclasses.MISSING:
                setattr(defaults, f.name, f.default)
        for key, kinds in ONLY_FOR.items():
            if self.kind not in kinds and getattr(self, key) != getattr(defaults, key):
                raise ValueError(f"{key}={getattr(self, key)!r} has no effect on kind={self.kind!r} (it is read by "
                                 f"{'/'.join(kinds)} only); remove it")
        if self.data_root and self.data != "cifar10":
            raise ValueError(f"data_root={self.data_root!r} has no effect on data={self.data!r} (CIFAR-10 only)")
        if self.lr_final and self.lr_schedule == "constant":
            raise ValueError(f"lr_final={self.lr_final} has no effect with lr_schedule='constant'")
        unset = {(defaults.p_mean, defaults.p_std), (MF_P_MEAN, MF_P_STD)}  # TrainConfig's and MeanFlow's defaults
        if self.kind == "meanflow" and self.mf_times == "uniform" and (self.p_mean, self.p_std) not in unset:
            raise ValueError(f"p_mean={self.p_mean!r}, p_std={self.p_std!r} have no effect with mf_times='uniform' "
                             "(they shape the logit-normal times); remove them or set mf_times=logit_normal")
        if self.channels_last == "true" and self.net == "mlp":
            raise ValueError("channels_last=true has no effect on points (net 'mlp'); it is for image networks")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path) -> None:
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2, sort_keys=True)

    @classmethod
    def load(cls, path) -> TrainConfig:
        with open(path) as fh:
            raw = json.load(fh)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        return cls(**raw)

    def override(self, pairs: list[str] | dict[str, Any]) -> TrainConfig:
        """A copy with ``key=value`` strings (or a dict) applied; values are parsed to the field's type."""
        items = dict(p.split("=", 1) if "=" in p else (p, None) for p in pairs) if isinstance(pairs, list) else pairs
        fields = {f.name: f for f in dataclasses.fields(self)}
        new = self.to_dict()
        for key, value in items.items():
            if value is None:
                raise ValueError(f"override {key!r} must look like key=value")
            if key not in fields:
                raise ValueError(f"unknown config key {key!r}; known keys: {', '.join(sorted(fields))}")
            try:
                new[key] = _parse(value, type(new[key])) if isinstance(value, str) else value
            except ValueError as err:
                raise ValueError(f"{key}={value}: {err}") from err
        return TrainConfig(**new)


def _parse(text: str, typ: type):
    try:
        if typ is str and text.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return "true" if text.lower() in ("1", "true", "yes", "on") else "false"
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if typ is dict:
            return json.loads(text)
        return typ(text)
    except ValueError as err:
        hint = " (use true / false, yes / no, on / off or 1 / 0)" if typ is bool else ""
        raise ValueError(f"cannot parse {text!r} as {typ.__name__}{hint}") from err
