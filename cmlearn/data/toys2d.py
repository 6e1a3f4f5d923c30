"""The 2D toy data sets of the course, each a Gaussian mixture (so its exact score is known).

Each is centred and scaled to data std SIGMA_DATA = 0.5, the sigma_data the preconditioning assumes (App. C).
"""

from __future__ import annotations

import math

import torch

from cmlearn.core.distributions import GaussianMixture
from cmlearn.core.parameterization import SIGMA_DATA


def _mixture(means: list[tuple[float, float]], std: float) -> GaussianMixture:
    """Equal-weight isotropic components of std ``std`` at ``means`` (before rescaling to SIGMA_DATA)."""
    m = torch.tensor(means, dtype=torch.float64)
    return GaussianMixture(m, torch.full((len(m),), std**2, dtype=torch.float64)).rescaled(SIGMA_DATA)


def eight_gaussians() -> GaussianMixture:
    """Eight Gaussians on a circle."""
    return _mixture([(math.cos(a), math.sin(a)) for a in (2 * math.pi * k / 8 for k in range(8))], 0.1)


def checkerboard() -> GaussianMixture:
    """The eight dark squares of a 4x4 board, each filled by a 2x2 grid of Gaussians."""
    means = []
    for i in range(4):
        for j in range(4):
            if (i + j) % 2 == 0:
                means += [(i + a, j + b) for a in (0.25, 0.75) for b in (0.25, 0.75)]
    return _mixture(means, 0.15)


def two_moons() -> GaussianMixture:
    """Two interleaved half circles."""
    a = [math.pi * k / 11 for k in range(12)]
    upper = [(math.cos(s), math.sin(s)) for s in a]
    lower = [(1 - math.cos(s), 0.5 - math.sin(s)) for s in a]
    return _mixture(upper + lower, 0.08)


def spiral() -> GaussianMixture:
    """A two-armed spiral."""
    means = []
    for k in range(16):
        r = 0.15 + k / 15
        s = 1.5 * math.pi * k / 15
        means += [(r * math.cos(s), r * math.sin(s)), (-r * math.cos(s), -r * math.sin(s))]
    return _mixture(means, 0.05)


def swiss_roll() -> GaussianMixture:
    """The 2D swiss roll: r grows with the angle from 1.5 pi to 4.5 pi."""
    means = []
    for k in range(30):
        s = 1.5 * math.pi + 3 * math.pi * k / 29
        means.append((s * math.cos(s) / 15, s * math.sin(s) / 15))
    return _mixture(means, 0.05)


PRESETS = {
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "two_moons": two_moons,
    "spiral": spiral,
    "swiss_roll": swiss_roll,
}


def preset(name: str) -> GaussianMixture:
    """A 2D preset by name: one of PRESETS."""
    if name not in PRESETS:
        raise ValueError(f"unknown 2D preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
