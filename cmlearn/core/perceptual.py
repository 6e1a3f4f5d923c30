"""The LPIPS distance d of the paper's image experiments (Sec. 5): LPIPS(VGG) on images resized to 224x224.

Both images are resized bilinearly to ``resize`` x ``resize`` (224, as in the paper's CIFAR-10 runs), then
compared by LPIPS (Zhang et al. 2018, the ``lpips`` package): unit-normalized VGG16 activations at five
depths, squared differences weighted by the calibrated linear layers (shipped inside the pip package),
averaged over space and summed. The VGG16 backbone holds ImageNet weights that torchvision downloads once
(about 530 MB) into ``torch.hub.get_dir()``; ``pretrained=False`` builds a random backbone instead (offline
tests only: that is not LPIPS).
"""

from __future__ import annotations

import urllib.error
import warnings

import torch
import torch.nn.functional as F
from torch import nn

NETS = ("vgg", "alex", "squeeze")


def _backbone_url(net: str) -> str:
    """Where torchvision fetches the ImageNet weights of the LPIPS backbone ``net``."""
    from torchvision import models

    weights = {"vgg": models.VGG16_Weights, "alex": models.AlexNet_Weights,
               "squeeze": models.SqueezeNet1_1_Weights}[net]
    return weights.IMAGENET1K_V1.url


class LPIPSDistance(nn.Module):
    """d(x, y) = LPIPS(resize(x), resize(y)) per sample (B,), for images in [-1, 1] with 1 or 3 channels.

    Parameters are frozen (``requires_grad=False``) and the network stays in eval mode, but the distance is
    differentiable with respect to both inputs, as the consistency losses need. Move it with ``.to(device)``.
    """

    def __init__(self, *, net: str = "vgg", resize: int | None = 224, pretrained: bool = True):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"unknown LPIPS net {net!r}; choose one of {NETS}")
        if resize is not None and (not isinstance(resize, int) or resize < 32):
            raise ValueError(f"resize must be None or an int >= 32 (VGG pools 4 times), got {resize!r}")
        import lpips

        self.net_name, self.resize, self.pretrained = net, resize, pretrained
        try:
            with warnings.catch_warnings():  # lpips still calls torchvision with the deprecated pretrained=
                warnings.simplefilter("ignore", UserWarning)
                self.lpips = lpips.LPIPS(net=net, pretrained=True, pnet_rand=not pretrained, verbose=False)
        except (urllib.error.URLError, OSError) as err:
            url = _backbone_url(net)
            dst = f"{torch.hub.get_dir()}/checkpoints/{url.rsplit('/', 1)[1]}"
            raise RuntimeError(
                f"could not get the ImageNet weights of the LPIPS {net} backbone "
                f"({type(err).__name__}: {err}). "
                f"If offline, download {url} on a machine with network access and put it at {dst} "
                f"(torch.hub's cache, set by TORCH_HOME), then retry.") from err
        self.lpips.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSDistance:
        """Keep the LPIPS network in eval mode (no dropout) whatever the caller asks."""
        super().train(mode)
        self.lpips.eval()
        return self

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample LPIPS distance (B,) between two batches (B, C, H, W) in [-1, 1], C in {1, 3}."""
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be (B, C, H, W) with C = 1 or 3, got shape {tuple(x.shape)}")
        return self.lpips(self._prepare(x), self._prepare(y), normalize=False).reshape(x.shape[0])

    def extra_repr(self) -> str:
        return f"net={self.net_name!r}, resize={self.resize}, pretrained={self.pretrained}"
