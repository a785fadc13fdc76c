"""Named running sums of training metrics, kept on the device so that adding costs no host sync.

    meter = Meter(TRAIN_SUMS, device)
    meter.add("loss", loss_sum); meter.add("correct", (logits.argmax(1) == y).sum()); meter.add("count", len(y))
    meter.reduced().means()      # {"loss": ..., "acc": ... (%), "adv_loss": None, "adv_acc": None}: one sync

Sums named `<p>loss`, `<p>correct` and `<p>count` form the group `<p>` (prefix p may be empty): `means` gives
its mean loss and accuracy in %.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sspnet import distributed as dist

# the sums of a training epoch, in the order of last.pt's "sums" tensor: clean batches, then adversarial ones
TRAIN_SUMS = ("loss", "correct", "count", "adv_loss", "adv_correct", "adv_count")
EVAL_SUMS = ("loss", "correct", "count")


class Meter:
    """Named sums in one 1-D device tensor (`sums`, shape len(names)). dtype float64 (float32 on MPS)."""

    def __init__(self, names: Sequence[str], device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
        self.names = tuple(names)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"meter names must be distinct, got {self.names}")
        self._index = {n: i for i, n in enumerate(self.names)}
        device = torch.device(device)
        if dtype is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(len(self.names), dtype=dtype, device=device)

    def add(self, name: str, value: torch.Tensor | float) -> None:
        """sums[name] += value (a number or a 0-d tensor on the meter's device); no host sync."""
        i = self._index[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().to(self.sums.dtype)
        self.sums[i] += value

    def reset(self) -> None:
        self.sums.zero_()

    def load(self, sums: torch.Tensor) -> None:
        """Take the values of a saved `sums` tensor (same names, same order)."""
        if tuple(sums.shape) != tuple(self.sums.shape):
            raise ValueError(f"saved metric sums have shape {tuple(sums.shape)}, expected {tuple(self.sums.shape)}")
        self.sums.copy_(sums.to(self.sums.device, self.sums.dtype))

    def reduced(self) -> Meter:
        """A copy summed over all ranks (collective: every rank must call it; a plain copy single-process)."""
        out = Meter(self.names, self.sums.device, self.sums.dtype)
        out.sums.copy_(self.sums)
        dist.all_reduce_sum(out.sums)
        return out

    def totals(self) -> dict[str, float]:
        """{name: sum} as Python floats (one host sync)."""
        return dict(zip(self.names, self.sums.tolist()))

    def means(self) -> dict[str, float | None]:
        """{<p>loss: mean loss, <p>acc: accuracy in %} per group; None for a group with count 0 (one sync)."""
        t = self.totals()
        out: dict[str, float | None] = {}
        for name in self.names:
            if not name.endswith("count"):
                continue
            p = name[: -len("count")]
            n = t[name]
            if p + "loss" in t:
                out[p + "loss"] = t[p + "loss"] / n if n else None
            if p + "correct" in t:
                out[p + "acc"] = 100.0 * t[p + "correct"] / n if n else None
        return out
