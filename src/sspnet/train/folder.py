"""The run folder of `sspnet train`: the checks before a run starts, clearing or resuming it, the state file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sspnet import distributed as dist
from sspnet.train.config import IDENTITY_FIELDS, TrainConfig, read_run_config

RUN_FILES = ("config.json", "metrics.jsonl", "train.log", "model_acc.pt", "model_loss.pt", "model_final.pt", "last.pt")


def load_state(path: str | Path) -> dict[str, Any]:
    """A last.pt training state (torch.load with weights_only=True, on CPU)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def check_folder(cfg: TrainConfig) -> list[str]:
    """Check the run folder against --resume/--force before anything is loaded; returns the run files in it."""
    run = Path(cfg.save)
    existing = [n for n in RUN_FILES if (run / n).exists()]
    if cfg.resume:
        saved = read_run_config(run)
        bad = [f"{k}={saved.get(k)!r} (asked: {getattr(cfg, k)!r})" for k in IDENTITY_FIELDS
               if k in saved and saved.get(k) != getattr(cfg, k)]
        if bad:
            raise ValueError(f"cannot resume {run}: it was made with other settings: {'; '.join(bad)}. "
                             "Resume without those flags, or start a new run with another --save (or --force)")
    elif existing and not cfg.force:
        raise FileExistsError(f"run folder {run} already holds a run ({', '.join(existing)}); pass --resume {run} "
                              "to continue it, --force to overwrite it, or another --save folder")
    return existing


def open_folder(cfg: TrainConfig, info: dist.DistInfo, existing: list[str]) -> dict[str, Any] | None:
    """Resume: the last.pt state (None if the run never saved one). Otherwise clear the old run's files."""
    run = Path(cfg.save)
    if cfg.resume:
        return load_state(run / "last.pt") if (run / "last.pt").is_file() else None
    dist.barrier()
    if info.is_main:
        for n in existing:
            (run / n).unlink(missing_ok=True)
    dist.barrier()
    return None
