"""A small CNN classifier of 8x8 digits whose penultimate features define the "FD-digits" metric.

It plays the role Inception-v3 plays for FID: a fixed network trained once
(``scripts/train_digits_classifier.py``), its weights shipped in ``data/digits_classifier.pt``, so every run
measures in the same feature space.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "digits_classifier.pt"
FORMAT = "cmlearn-digits-classifier-v1"


class DigitsClassifier(nn.Module):
    """conv32-conv32-pool-conv64-conv64-pool-fc(feature_dim)-fc(10) on (B, 1, 8, 8) images in [-1, 1]."""

    def __init__(self, *, width: int = 32, feature_dim: int = 64, num_classes: int = 10,
                 dropout: float = 0.2):
        super().__init__()
        if width < 1 or feature_dim < 1 or num_classes < 2:
            raise ValueError(f"need width, feature_dim >= 1 and num_classes >= 2, got width={width}, "
                             f"feature_dim={feature_dim}, num_classes={num_classes}")
        self.config = dict(width=width, feature_dim=feature_dim, num_classes=num_classes, dropout=dropout)
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * w * 4, feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, 8, 8):
            raise ValueError(f"expected images of shape (B, 1, 8, 8), got {tuple(x.shape)}")
        return x.to(self.head.weight.dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, feature_dim): the feature space of FD-digits."""
        return self.body(self._check(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.head(self.dropout(self.features(x)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
        """Predicted labels (B,) in eval mode, in batches."""
        was = self.training
        self.eval()
        out = torch.cat([self(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
        self.train(was)
        return out


def save_digits_classifier(model: DigitsClassifier, path: str | Path, **meta) -> None:
    """Write the weights, the constructor config and free-form metadata (e.g. test accuracy)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "config": model.config, "state_dict": model.state_dict(), "meta": meta}
    torch.save(state, path)


def load_digits_classifier(path: str | Path | None = None, *, device: str | torch.device = "cpu"
                           ) -> DigitsClassifier:
    """The shipped classifier (``data/digits_classifier.pt`` of the repository) or the one at ``path``.

    Raises FileNotFoundError when the file is missing and ValueError when it is not a valid classifier file.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"digits classifier weights not found: {path} "
                                "(run `python scripts/train_digits_classifier.py` to create them)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"corrupt digits classifier weights in {path}: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a cmlearn digits classifier file (expected format {FORMAT!r})")
    try:
        model = DigitsClassifier(**state["config"])
        model.load_state_dict(state["state_dict"])
    except Exception as err:
        raise ValueError(f"corrupt digits classifier weights in {path}: {err}") from err
    model.meta = dict(state.get("meta", {}))
    return model.to(device).eval().requires_grad_(False)
