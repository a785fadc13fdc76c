"""TrainState: everything a run needs to continue exactly, and its last.pt form.

last.pt (torch.save, loadable with weights_only=True) holds {"format": "sspnet-train-state", "format_version": 1,
"config", "model_config", "model", "optimizer", "scheduler", "scaler", "epoch", "step", "sums", "seconds",
"best", "rng": {"torch", "python", "cuda"}}. epoch: epochs completed; step: optimizer steps done in the
current epoch; sums: the epoch's metric sums (`meter.TRAIN_SUMS` order); seconds: training seconds of the
current epoch so far.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sspnet.io.runlayout import RunLayout
from sspnet.train.meter import Meter
from sspnet.train.optim import load_schedule_state

STATE_FORMAT = "sspnet-train-state"
STATE_FORMAT_VERSION = 1


@dataclass
class TrainState:
    """The model, its optimizer / lr schedule / AMP scaler, the position and the metrics of a run.

    epoch / step: epochs completed and steps done in the epoch under way; seconds: training seconds of that
    epoch before the clock was last started; best: best {"acc": %, "loss": mean cross-entropy} so far on the
    selection split (TrainConfig.select_on; None before the first epoch and without selection); meter: the
    epoch's metric sums; config: the resolved TrainConfig as a dict, stored in last.pt for reference.
    The scheduler keeps its own factor on load (`optim.load_schedule_state`): a new --epochs takes effect.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    meter: Meter
    config: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    best: dict[str, float | None] = field(default_factory=lambda: {"acc": None, "loss": None})
    clock: float = field(default_factory=time.perf_counter, repr=False)  # perf_counter at the epoch's (re)start

    def start_clock(self) -> None:
        self.clock = time.perf_counter()

    def elapsed(self) -> float:
        """Training seconds of the current epoch so far (0 at an epoch boundary)."""
        return self.seconds + (time.perf_counter() - self.clock if self.step else 0.0)

    def next_epoch(self) -> None:
        """Counters and sums of a finished epoch -> the start of the next one."""
        self.epoch, self.step, self.seconds = self.epoch + 1, 0, 0.0
        self.meter.reset()

    def update_best(self, loss: float, acc: float) -> dict[str, bool]:
        """Record an epoch's result on the selection split; returns {"acc": new best accuracy, "loss": new best
        loss}."""
        new = {
            "acc": self.best["acc"] is None or acc > self.best["acc"],
            "loss": self.best["loss"] is None or loss < self.best["loss"],
        }
        if new["acc"]:
            self.best["acc"] = acc
        if new["loss"]:
            self.best["loss"] = loss
        return new

    def state_dict(self) -> dict[str, Any]:
        """The last.pt content (module docstring); tensors on CPU, RNG states of torch, Python and CUDA."""
        cuda = self.meter.sums.device.type == "cuda"
        return {
            "format": STATE_FORMAT,
            "format_version": STATE_FORMAT_VERSION,
            "config": dict(self.config),
            "model_config": dict(getattr(self.model, "config", {})),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "sums": self.meter.sums.detach().cpu(),
            "seconds": self.elapsed(),
            "best": dict(self.best),
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if cuda else None,
            },
        }

    def load_state_dict(self, state: dict[str, Any], source: str = RunLayout.STATE) -> None:
        """Continue from a `state_dict()` (also sets the global RNG states); ValueError if it is none."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{source} is not an sspnet training state")
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[-1].strip()[:200]
            raise ValueError(
                f"{source} does not fit the run's model ({RunLayout.CONFIG} changed since it was saved?): {first}"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        load_schedule_state(self.scheduler, state["scheduler"])  # this run's budget, the saved step
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.seconds = int(state["epoch"]), int(state["step"]), float(state["seconds"])
        self.meter.load(state["sums"])
        self.best = dict(state["best"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and self.meter.sums.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.start_clock()
