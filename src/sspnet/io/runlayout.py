"""The layout of a run folder: the name of every file in it, stated once.

    config.json     the resolved training options (written by `sspnet.train.RunFolder`)
    metrics.jsonl   one JSON record per finished epoch
    train.log       timestamped lines
    model_acc.pt / model_loss.pt / model_final.pt    the checkpoint of each crit (acc | loss | final; last =
                    final): best accuracy / loss on the selection split, the latest epoch
    last.pt         the training state a resume starts from
    tb/             TensorBoard events
    .sspnet.lock    the folder lock of the process working in it (`sspnet.io.lock`)
    compare.json / growth.json / audit.json    `sspnet compare`'s records of the run: evaluation, perturbation
                    growth, gradient-masking audit; .compare-job/ and .compare-audit/ hold its job locks

This module only names and reads: `sspnet.train.RunFolder` (a `RunLayout`) writes the training files, compare's
record store (`sspnet.experiments.compare`) its records, and the readers (`sspnet.nn.checkpoints`, compare's
plan) find the files through the same names. It sits in io so that nn may use it without importing train.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sspnet.io.lock import LOCK_FILE


class RunLayout:
    """The paths of the run folder `path` (upper-case class attributes: the file names)."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    LOG = "train.log"
    STATE = "last.pt"
    TENSORBOARD = "tb"
    LOCK = LOCK_FILE
    CHECKPOINTS = MappingProxyType({"acc": "model_acc.pt", "loss": "model_loss.pt", "final": "model_final.pt"})
    CRITS = ("final", "acc", "loss", "last")  # last: the same file as final (the original's name)
    # the files of a training run, in the order a --force clears them
    TRAIN_FILES = (CONFIG, METRICS, LOG, CHECKPOINTS["acc"], CHECKPOINTS["loss"], CHECKPOINTS["final"], STATE)
    COMPARE = "compare.json"
    GROWTH = "growth.json"
    AUDIT = "audit.json"
    JOB_LOCK = ".compare-job"  # a folder: its own LOCK while a compare job works on the run
    AUDIT_LOCK = ".compare-audit"  # a folder: its own LOCK while a compare job audits the run

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def checkpoint_name(cls, crit: str = "final") -> str:
        """The file name of crit's checkpoint: final | last -> model_final.pt, acc, loss; ValueError otherwise."""
        if crit not in cls.CRITS:
            raise ValueError(f"unknown crit {crit!r}; valid: {', '.join(cls.CRITS)}")
        return cls.CHECKPOINTS["final" if crit == "last" else crit]

    def checkpoint(self, crit: str = "final") -> Path:
        return self.path / self.checkpoint_name(crit)

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def log_file(self) -> Path:
        return self.path / self.LOG

    @property
    def state_file(self) -> Path:
        return self.path / self.STATE

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def compare_record(self) -> Path:
        return self.path / self.COMPARE

    @property
    def growth_record(self) -> Path:
        return self.path / self.GROWTH

    @property
    def audit_record(self) -> Path:
        return self.path / self.AUDIT

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl, one per finished epoch (blank lines skipped). FileNotFoundError
        without the file; json.JSONDecodeError on a damaged line."""
        text = self.metrics.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def train_files(self) -> list[str]:
        """The names of TRAIN_FILES present in the folder."""
        return [name for name in self.TRAIN_FILES if (self.path / name).exists()]


__all__ = ["RunLayout"]
