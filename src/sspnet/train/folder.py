"""The run folder of `sspnet train`: every file of a run, written only by rank 0, each atomically.

    config.json     {"format_version": 2, "config": resolved TrainConfig (eps/alpha in pixel units),
                     "world_size", "model_config", "provenance"}
    metrics.jsonl   one JSON record per finished epoch
    train.log       timestamped lines (also echoed to stderr unless quiet)
    model_acc.pt / model_loss.pt    the model of the best test accuracy / loss (`sspnet.nn.save_checkpoint`,
                    with "args": the original code's argparse names and units)
    model_final.pt  the model after the latest epoch
    last.pt         the `TrainState` (see `sspnet.train.state`)
    tb/             TensorBoard events (--tensorboard)
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sspnet import distributed as dist
from sspnet.data.specs import get_dataset_spec
from sspnet.io import files as fileio
from sspnet.train.config import CONFIG_FORMAT_VERSION, IDENTITY_FIELDS, TrainConfig, read_run_config, to_cli_units
from sspnet.train.state import TrainState

RUN_FILES = ("config.json", "metrics.jsonl", "train.log", "model_acc.pt", "model_loss.pt", "model_final.pt", "last.pt")


def load_state(path: str | Path) -> dict[str, Any]:
    """A last.pt training state (torch.load with weights_only=True, on CPU)."""
    return torch.load(path, map_location="cpu", weights_only=True)


class RunFolder:
    """The files of one run (cfg.save). Every method that writes is a no-op on ranks other than 0.

    Use: `check()` before loading anything, `open()` once data and model are known good (clears the old run
    with --force, returns the last.pt state with --resume), then the writers.
    """

    def __init__(self, cfg: TrainConfig, info: dist.DistInfo):
        self.cfg, self.info = cfg, info
        self.path = Path(cfg.save)
        self.main = info.is_main
        self.existing: list[str] = []

    def check(self) -> None:
        """ValueError / FileExistsError when the folder does not fit --resume / --force (nothing written)."""
        run, cfg = self.path, self.cfg
        self.existing = [n for n in RUN_FILES if (run / n).exists()]
        if cfg.resume:
            saved = read_run_config(run)
            bad = [f"{k}={saved.get(k)!r} (asked: {getattr(cfg, k)!r})" for k in IDENTITY_FIELDS
                   if k in saved and saved.get(k) != getattr(cfg, k)]
            if bad:
                raise ValueError(f"cannot resume {run}: it was made with other settings: {'; '.join(bad)}. "
                                 "Resume without those flags, or start a new run with another --save (or --force)")
        elif self.existing and not cfg.force:
            raise FileExistsError(f"run folder {run} already holds a run ({', '.join(self.existing)}); pass "
                                  f"--resume {run} to continue it, --force to overwrite it, or another --save folder")

    def open(self) -> dict[str, Any] | None:
        """Resume: the last.pt state (None if the run never saved one). Otherwise delete the old run's files."""
        if self.cfg.resume:
            last = self.path / "last.pt"
            return load_state(last) if last.is_file() else None
        dist.barrier()
        if self.main:
            for n in self.existing:
                (self.path / n).unlink(missing_ok=True)
        dist.barrier()
        return None

    def start(self, epoch: int, model_config: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Write config.json (again on resume: it records extended epochs); on resume drop the metrics lines of
        epochs after `epoch` (redone after a crash). Returns the metrics records kept (the history)."""
        history: list[dict[str, Any]] = []
        metrics = self.path / "metrics.jsonl"
        if self.cfg.resume and metrics.is_file():
            lines = [ln for ln in metrics.read_text(encoding="utf-8").splitlines() if ln.strip()]
            history = [r for r in map(json.loads, lines) if r["epoch"] <= epoch]
        if self.main:
            if self.cfg.resume and metrics.is_file():
                fileio.atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in history))
            fileio.atomic_write_json(self.path / "config.json", {
                "format_version": CONFIG_FORMAT_VERSION, "config": dataclasses.asdict(self.cfg),
                "world_size": self.info.world_size, "model_config": model_config,
                "provenance": fileio.provenance()})
        return history

    def log(self, msg: str) -> None:
        """A timestamped train.log line, echoed to stderr unless quiet."""
        if not self.main:
            return
        fileio.append_line(self.path / "train.log", f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}")
        if not self.cfg.quiet:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def tensorboard(self):
        """A SummaryWriter on RUN/tb (rank 0 with --tensorboard), else None."""
        if not (self.main and self.cfg.tensorboard):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("tensorboard is not installed (pip install tensorboard); continuing without it")
            return None
        return SummaryWriter(str(self.path / "tb"))

    def save_state(self, state: TrainState) -> None:
        """last.pt = state.state_dict(), atomically (a crash while saving keeps the previous one)."""
        if self.main:
            fileio.atomic_torch_save(state.state_dict(), self.path / "last.pt")

    def end_epoch(self, rec: dict[str, Any], state: TrainState) -> None:
        """The metrics line, best / final checkpoints, then last.pt (a crash in between redoes the epoch)."""
        if not self.main:
            return
        from sspnet.nn.checkpoints import save_checkpoint

        fileio.append_line(self.path / "metrics.jsonl", json.dumps(rec))
        extra = {"args": original_args(self.cfg), "epoch": rec["epoch"], "test_acc": rec["test_acc"],
                 "test_loss": rec["test_loss"]}
        for key in ("acc", "loss"):
            if rec["best_" + key]:
                save_checkpoint(self.path / f"model_{key}.pt", state.model, **extra)
        save_checkpoint(self.path / "model_final.pt", state.model, **extra)
        self.save_state(state)


def original_args(cfg: TrainConfig) -> dict[str, Any]:
    """The original code's argparse names and units (eps / alpha in 1/255 on cifar10/tiny), for checkpoints'
    "args" entry."""
    spec = get_dataset_spec(cfg.dataset)
    cli = (lambda v: None if v is None else to_cli_units(v, spec))
    return {"model": cfg.model, "block": cfg.blocks, "lr": cfg.lr, "decay": cfg.decay, "tbsize": cfg.batch_size,
            "iters": cfg.steps, "adv": cfg.adv, "attack": cfg.adv, "epochs": cfg.epochs, "save": cfg.save,
            "opt": cfg.opt, "norm": cfg.norm, "seed": cfg.seed, "eps": cli(cfg.eps), "alpha": cli(cfg.alpha),
            "dataset": cfg.dataset, "groups": cfg.groups}
