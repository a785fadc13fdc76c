"""Optimizers and learning-rate schedules with the original code's defaults.

Defaults (the original code's):
- cifar10 / tiny: SGD lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4; Adam lr 1e-4, betas (0, 0.9);
  RMSprop lr 1e-3.
- mnist / fmnist: SGD lr 0.1 without momentum; Adam with PyTorch's defaults (lr 1e-3); RMSprop lr 1e-3.
- multistep: gamma 0.1 at epoch milestones. cifar10/tiny: [80,140,180] adversarial with lr >= 0.1,
  [120,160,180] adversarial with lr < 0.1, [70,120,160] standard ssp2/ssp3, [60,100,140] other standard
  ([30,60,90] when epochs <= 100). mnist/fmnist: [60,100,140].
- cyclic (Wong et al. 2020): lr rises linearly from 0 to the peak at 2/5 of training, then falls to 0.

Every schedule is a `LambdaLR` stepped once per training step, with a picklable factor object, so its
state_dict round-trips through `torch.load(weights_only=True)` and a resumed run continues exactly.
`load_schedule_state` takes only the position of a saved schedule: a run resumed with another --epochs
continues at its step on the schedule a fresh run with the new budget would follow.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import torch

OPTIMIZERS = ("sgd", "adam", "rms")
SCHEDULES = ("multistep", "cyclic")
_COLOR_ARCHS = ("cifar10", "tinyimagenet")


def _check_opt(opt: str) -> str:
    key = str(opt).lower()
    if key == "rmsprop":
        key = "rms"
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {opt!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    return key


def default_lr(arch: str, opt: str) -> float:
    """The original's learning rate for an architecture ('mnist', 'cifar10', 'tinyimagenet') and optimizer."""
    opt = _check_opt(opt)
    if opt == "sgd":
        return 0.1
    if opt == "adam":
        return 1e-4 if arch in _COLOR_ARCHS else 1e-3
    return 1e-3


def default_decay(arch: str, opt: str) -> float:
    """Weight decay: 5e-4 for SGD on colour datasets (the original's), 0 otherwise."""
    return 5e-4 if _check_opt(opt) == "sgd" and arch in _COLOR_ARCHS else 0.0


def default_milestones(arch: str, epochs: int, adversarial: bool, lr: float, model: str = "res") -> list[int]:
    """The original's MultiStepLR milestones (epochs, gamma 0.1); see the module docstring."""
    if arch not in _COLOR_ARCHS:
        return [60, 100, 140]
    if adversarial:
        return [80, 140, 180] if lr >= 0.1 else [120, 160, 180]
    if str(model).lower() in ("ssp2", "ssp3"):
        return [70, 120, 160]
    return [30, 60, 90] if epochs <= 100 else [60, 100, 140]


def build_optimizer(
    params: Iterable[torch.nn.Parameter], opt: str, lr: float, decay: float, arch: str
) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum 0.9 on colour datasets, plain on grey ones), Adam or RMSprop."""
    opt = _check_opt(opt)
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    if decay < 0:
        raise ValueError(f"weight decay must be >= 0, got {decay}")
    params = list(params)
    if opt == "sgd":
        if arch in _COLOR_ARCHS:
            return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay)
        return torch.optim.SGD(params, lr=lr, weight_decay=decay)
    if opt == "adam":
        betas = (0.0, 0.9) if arch in _COLOR_ARCHS else (0.9, 0.999)
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=decay)
    return torch.optim.RMSprop(params, lr=lr, weight_decay=decay)


class MultiStepFactor:
    """lr factor at global step k: gamma ** (number of milestones <= k // steps_per_epoch)."""

    def __init__(self, milestones: list[int], steps_per_epoch: int, gamma: float = 0.1):
        self.milestones = sorted(int(m) for m in milestones)
        self.steps_per_epoch = int(steps_per_epoch)
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return self.gamma ** bisect.bisect_right(self.milestones, epoch)


class CyclicFactor:
    """Triangular one-cycle factor: 0 -> 1 at `peak` (fraction of training) -> 0 at `total_steps`.

    Evaluated at (k + 1) / total_steps so that the first step already has a non-zero lr.
    """

    def __init__(self, total_steps: int, peak: float = 0.4):
        self.total_steps = int(total_steps)
        self.peak = float(peak)

    def __call__(self, step: int) -> float:
        t = min(1.0, (step + 1) / self.total_steps)
        if t <= self.peak:
            return t / self.peak
        return max(0.0, (1.0 - t) / (1.0 - self.peak))


def build_schedule(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    epochs: int,
    steps_per_epoch: int,
    milestones: list[int] | None = None,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR: `multistep` (needs milestones, in epochs) or `cyclic` over epochs * steps_per_epoch."""
    key = str(schedule).lower()
    if key not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"need epochs >= 1 and steps per epoch >= 1, got {epochs} and {steps_per_epoch}")
    if key == "multistep":
        if milestones is None:
            raise ValueError("the multistep schedule needs milestones (epochs)")
        if any(int(m) < 1 for m in milestones):
            raise ValueError(f"milestones must be positive epoch numbers, got {list(milestones)}")
        factor = MultiStepFactor(list(milestones), steps_per_epoch, gamma)
    else:
        factor = CyclicFactor(epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_schedule_state(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict) -> None:
    """Continue a saved `build_schedule` schedule at its step, with this scheduler's own factor.

    LambdaLR.load_state_dict would also copy the saved factor's attributes (the old total steps); here only the
    position (last_epoch = steps taken) is loaded, and every param group's lr becomes base_lr * factor(step):
    the lr a fresh run built for the current budget has at that step. Call it after the optimizer's
    load_state_dict. With an unchanged budget the lr is the one saved, bit for bit.
    """
    kept = {k: v for k, v in state.items() if k != "lr_lambdas"}
    scheduler.load_state_dict({**kept, "lr_lambdas": [None] * len(scheduler.lr_lambdas)})
    lrs = [base * factor(scheduler.last_epoch) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs
