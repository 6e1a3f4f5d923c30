"""Train the digits classifier behind FD-digits on the digits train split and write data/digits_classifier.pt.

Usage: python scripts/train_digits_classifier.py [--out PATH] [--epochs 60] [--seed 0]
Augmentation: random shifts of up to one pixel (background-padded). Prints the test-split accuracy.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from cmlearn.data.digits import digits
from cmlearn.nets.digits_classifier import DEFAULT_WEIGHTS, DigitsClassifier, save_digits_classifier
from cmlearn.runtime import seed_everything


def random_shift(x: torch.Tensor, generator: torch.Generator, *, max_shift: int = 1) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels along each axis; background -1 fills in."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)).unbind(0)
    rows = (dy[:, None] + torch.arange(h))[:, :, None].expand(n, h, w)
    cols = (dx[:, None] + torch.arange(w))[:, None, :].expand(n, h, w)
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def accuracy(model: DigitsClassifier, split: str) -> float:
    x, y = digits(split=split).tensors
    return (model.predict(x) == y).float().mean().item()


def train(*, epochs: int = 60, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4,
          seed: int = 0) -> DigitsClassifier:
    """Adam with a cosine learning-rate decay over ``epochs`` passes of the train split."""
    gen = seed_everything(seed)
    x, y = digits(split="train").tensors
    model = DigitsClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(random_shift(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1}: loss {total / len(x):.4f}, train acc {accuracy(model, 'train'):.4f}")
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    t0 = time.perf_counter()
    model = train(epochs=args.epochs, seed=args.seed)
    acc = accuracy(model, "test")
    print(f"test accuracy {acc:.4f} ({time.perf_counter() - t0:.0f} s)")
    save_digits_classifier(model, args.out, test_accuracy=acc, epochs=args.epochs, seed=args.seed,
                           split="train", test_fraction=0.2, split_seed=0)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
