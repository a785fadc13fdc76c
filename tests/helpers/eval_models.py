"""Small MNIST models for the evaluation tests (early stop, audit): an ordinary CNN trained for a few dozen Adam
steps on the embedded mnist5k data, and two wrappers that mask its gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stand_in(seed: int = 0) -> nn.Module:
    """A 2-conv CNN on 1 x 28 x 28 images in [0, 1], 10 classes."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=2),
        nn.ReLU(),
        nn.Conv2d(8, 16, 5, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def trained_stand_in(seed: int = 0, steps: int = 60) -> nn.Module:
    """`stand_in(seed)` after `steps` Adam steps (batch 64) on the mnist5k train split (about 90% test accuracy
    after 60), in eval mode."""
    from sspnet.data import load

    x, y = load("mnist5k", split="train")
    model = stand_in(seed)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        loss = F.cross_entropy(model(x[idx].float() / 255), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class ScaledLogits(nn.Module):
    """The model's logits times a huge factor: predictions unchanged, but the softmax saturates, so the
    cross-entropy input gradient underflows to exactly 0 (defensive-distillation-style masking)."""

    def __init__(self, model: nn.Module, factor: float = 1e4):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.model(x) * self.factor


class Rounded(nn.Module):
    """Straight rounding of the input to `levels` grey levels in front of the model: the gradient through
    torch.round is 0 everywhere."""

    def __init__(self, model: nn.Module, levels: int = 4):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)
