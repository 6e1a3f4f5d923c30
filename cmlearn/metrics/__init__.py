"""Quality metrics: point-cloud distances (toys), Frechet distance (digits, CIFAR-10 FID)."""

from cmlearn.metrics.points import energy_distance, mixture_nll, sliced_wasserstein

__all__ = ["energy_distance", "mixture_nll", "sliced_wasserstein"]
