"""One training step, the training adversary and the clean test evaluation: functions of their arguments only.

Images are float B x C x H x W in [0, 1], labels int64 B; eps / alpha in pixel units. Loss sums and metric
sums stay on the device (no host sync per step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sspnet.attacks import FastFGSM, ThreatModel
from sspnet.train.meter import EVAL_SUMS, Meter

# the training adversaries: fgsm / pgd / fast are attacks of `sspnet.attacks.registry` (fast: the original's
# name of fastfgsm), ball trains on noisy copies (`sspnet.attacks.ball_copies`); `adversary_threat` says how
ADVERSARIES = ("none", "fgsm", "pgd", "ball", "fast")


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """torch.autocast for `amp_dtype` on the device's type, or a no-op context when amp_dtype is None."""
    return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()


class Adversary:
    """The training adversary: `adversary(x, y, generator) -> (x_train, y_train)`.

    kind: fgsm | pgd | fast, built by the attack registry from `threat` (`ThreatModel.attack`; fast is the
    original's name of fastfgsm), crafted in the model's current (train) mode as the original, or in eval
    mode with craft_eval; ball: `copies` uniformly noisy copies of every image at threat.eps
    (`sspnet.attacks.ball_copies`; x_train has copies * B images). threat: `TrainConfig.threat()` /
    `adversary_threat` (pgd: random start, steps of alpha; fast: FastFGSM's 1.25 eps;
    8-bit rounding of the random start and every step as train_quantize, never for ball's noise). All
    randomness comes from `generator`. amp_dtype: bfloat16 crafts under autocast (float16 crafts in float32:
    it has no gradient scaling).
    """

    def __init__(
        self,
        kind: str,
        model: nn.Module,
        threat: ThreatModel,
        copies: int = 1,
        craft_eval: bool = False,
        amp_dtype: torch.dtype | None = None,
    ):
        self.kind, self.threat = kind, threat
        self.eps = threat.eps
        self.copies = copies if kind == "ball" else 1
        self.amp_dtype = amp_dtype if amp_dtype == torch.bfloat16 else None
        self.attack = None
        if kind != "ball":
            self.attack = threat.attack(kind, model, mode="eval" if craft_eval else "keep")
        self.fraction = 1.0
        self._full_alpha = None if self.attack is None else self.attack.alpha  # fgsm: eps; fast: 1.25 eps

    def set_fraction(self, fraction: float) -> None:
        """Craft at `fraction` (in (0, 1]) of the full eps and alpha from now on (eps warm-up)."""
        self.fraction = fraction
        if self.attack is not None:
            self.attack.eps = self.eps * fraction
            self.attack.alpha = self._full_alpha * fraction

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.attack is None:
            from sspnet.attacks import ball_copies

            return ball_copies(x, y, self.eps * self.fraction, self.copies, generator)
        self.attack.generator = generator
        with autocast(x.device, self.amp_dtype):
            x_adv = self.attack(x, y)
        return x_adv.detach(), y


def adversary_threat(adv: str, eps: float, alpha: float, steps: int, quantize: bool) -> ThreatModel | None:
    """The threat model of training adversary `adv` (`ADVERSARIES`; None for none): linf at eps (pixel units),
    rounded to the 8-bit grid as `quantize` (train_quantize). pgd: `steps` steps of alpha from a random start;
    fgsm: one step of eps from x; fast: FastFGSM, one step of its own 1.25 eps from a random start (alpha is
    pgd's step only, as the original); ball: uniform noise in the eps-ball, never rounded (as the original)."""
    kind = str(adv).lower()
    if kind == "none":
        return None
    if kind == "pgd":
        return ThreatModel(eps=eps, alpha=alpha, steps=steps, random_start=True, quantize=quantize)
    if kind == "fgsm":
        return ThreatModel(eps=eps, alpha=eps, steps=1, quantize=quantize)
    if kind == "fast":  # (eps 0: no step; an alpha of 0 would be refused)
        step = FastFGSM.ALPHA_REL * eps if eps > 0 else None
        return ThreatModel(eps=eps, alpha=step, steps=1, random_start=True, quantize=quantize)
    if kind == "ball":
        return ThreatModel(eps=eps, alpha=None, steps=0, random_start=True, quantize=False)
    raise ValueError(f"unknown adversary {adv!r}; valid adversaries: {', '.join(ADVERSARIES)}")


def warmup_fraction(done_steps: int, warmup_steps: float) -> float:
    """The fraction of the full training eps at the optimizer step after `done_steps` steps:
    min(1, (done_steps + 1) / warmup_steps), so it reaches 1 at step ceil(warmup_steps); 1 without warm-up."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (done_steps + 1) / warmup_steps)


def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler | None,
    batch: tuple[Tensor, Tensor],
    meter: Meter,
    *,
    adversary: Adversary | None = None,
    generator: torch.Generator | None = None,
    loss_scale: float = 1.0,
    amp_dtype: torch.dtype | None = None,
    clean_metrics: bool = False,
    show: Callable[[Tensor], None] | None = None,
) -> Tensor:
    """One optimizer step (and one scheduler step) on a batch, or on its adversarial version.

    Args:
        net: the model, or its DistributedDataParallel wrapper (the clean forward uses the inner model).
        batch: (x B x C x H x W in [0, 1], y int64 B), this rank's part of the global batch.
        meter: `meter.TRAIN_SUMS`; clean sums (loss, correct: only with clean_metrics) and count without an
            adversary go to loss/correct/count, those of the trained-on adversarial batch to adv_*.
        loss_scale: the loss minimised is loss_scale * (sum of cross-entropies); world_size / (images of the
            global step) makes DDP's gradient average the global mean.
        show: called with the batch trained on when there is an adversary (TensorBoard images).
    Returns:
        The cross-entropy sum (0-d tensor on the device, float32) of the batch trained on.
    """
    x, y = batch
    if adversary is not None:
        if clean_metrics:
            _clean_sums(getattr(net, "module", net), x, y, meter, amp_dtype)
        meter.add("count", y.shape[0])
        x, y = adversary(x, y, generator)
        if show is not None:
            show(x)
    with autocast(x.device, amp_dtype):
        logits = net(x).float()
    loss_sum = F.cross_entropy(logits, y, reduction="sum")
    loss = loss_sum * loss_scale
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    scheduler.step()
    p = "" if adversary is None else "adv_"
    with torch.no_grad():
        meter.add(p + "loss", loss_sum)
        meter.add(p + "correct", (logits.argmax(1) == y).sum())
        meter.add(p + "count", y.shape[0])
    return loss_sum.detach()


@torch.no_grad()
def _clean_sums(model: nn.Module, x: Tensor, y: Tensor, meter: Meter, amp_dtype: torch.dtype | None) -> None:
    """Clean loss / correct of a training batch, BatchNorm running statistics left untouched."""
    from sspnet.nn.blocks import frozen_batchnorm_stats

    with autocast(x.device, amp_dtype), frozen_batchnorm_stats(model):
        logits = model(x).float()
    meter.add("loss", F.cross_entropy(logits, y, reduction="sum"))
    meter.add("correct", (logits.argmax(1) == y).sum())


@torch.no_grad()
def evaluate_clean(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format | None = None,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """Clean test metrics, summed over all ranks (a collective under torchrun: every rank calls it).

    Args:
        model: evaluated in eval mode; its train/eval mode is restored afterwards.
        batches: this rank's (x B x C x H x W in [0, 1], y int64 B) batches.
        memory_format: e.g. torch.channels_last for the inputs (None: as they come).
    Returns:
        (mean cross-entropy, accuracy in %) over every image of every rank (0, 0 without images).
    """
    meter = Meter(EVAL_SUMS, device)
    training = model.training
    model.eval()
    try:
        for x, y in batches:
            if memory_format is not None:
                x = x.contiguous(memory_format=memory_format)
            with autocast(x.device, amp_dtype):
                logits = model(x).float()
            meter.add("loss", F.cross_entropy(logits, y, reduction="sum"))
            meter.add("correct", (logits.argmax(1) == y).sum())
            meter.add("count", y.shape[0])
    finally:
        model.train(training)
    s = meter.reduced().totals()
    n = max(s["count"], 1)
    return s["loss"] / n, 100.0 * s["correct"] / n
