"""cmlearn: Consistency Models (Song, Dhariwal, Chen, Sutskever, ICML 2023), built to be learned."""

from cmlearn.runtime import default_device, fast_mode, pick, seed_everything

__version__ = "0.1.0"

__all__ = ["default_device", "fast_mode", "pick", "seed_everything", "__version__"]
