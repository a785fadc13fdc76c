"""TrainConfig: the options of `sspnet train` / `sspnet.train.train`, their validation and defaults.

None means "the dataset's / the original code's default"; `resolved()` fills them in (the values written to
config.json). eps / alpha are in CLI units (spec.eps_unit: 1/255 on cifar10/tiny, [0, 1] on grey data).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sspnet.train.optim import OPTIMIZERS, SCHEDULES, default_decay, default_lr, default_milestones
from sspnet.data.specs import get_dataset_spec

ADVERSARIES = ("none", "fgsm", "pgd", "ball", "fast")
# Fields that define the computation: a resumed run must agree with the folder on all of them.
IDENTITY_FIELDS = ("dataset", "model", "groups", "blocks", "norm", "init", "adv", "opt", "lr", "decay", "milestones",
                   "schedule", "batch_size", "iters", "eps", "alpha", "seed", "steps_per_epoch", "craft_eval",
                   "ball_copies", "init_from", "clean_metrics")
ALIASES = {"tbsize": "batch_size", "block": "blocks", "checkpoint": "activation_checkpointing", "data-root": "data_root"}


@dataclass
class TrainConfig:
    """Everything `train` needs. None means "the dataset's / original code's default" (resolved in config.json).

    eps / alpha are in CLI units: multiples of 1/255 for cifar10/tiny (8 means 8/255), [0, 1] for grey datasets.
    batch_size is the global batch (split across ranks under torchrun). steps_per_epoch caps the steps of every
    epoch (small-budget runs). save_every: steps between mid-epoch last.pt saves (0: epoch ends only).
    init_from: a checkpoint or run folder whose weights start the run (fine-tuning; same model config).
    test_limit: evaluate on that many evenly spaced test images (small-budget runs).
    """

    dataset: str = "mnist5k"
    data_root: str | None = None
    model: str = "res"
    groups: list[str] | None = None
    blocks: int | None = None
    norm: str | None = None
    init: str | None = None
    lr: float | None = None
    decay: float | None = None
    batch_size: int = 128
    epochs: int = 200
    opt: str = "sgd"
    milestones: list[int] | None = None
    schedule: str = "multistep"
    adv: str = "none"
    iters: int | None = None
    eps: float | None = None
    alpha: float | None = None
    ball_copies: int = 5
    save: str | None = None
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    force: bool = False
    quiet: bool = False
    tensorboard: bool = False
    craft_eval: bool = False
    clean_metrics: bool = False
    activation_checkpointing: bool = False
    steps_per_epoch: int | None = None
    init_from: str | None = None
    test_limit: int | None = None
    eval_batch_size: int = 500
    save_every: int = 100
    log_interval: int = 20
    amp: bool | None = None
    channels_last: bool | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (config file / config.json); keys may use dashes or the original's names."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {}
        for key, value in d.items():
            k = ALIASES.get(key, ALIASES.get(key.replace("-", "_"), key.replace("-", "_")))
            if k not in names:
                raise ValueError(f"unknown training option {key!r}; valid options: {', '.join(sorted(names))}")
            kw[k] = value
        return cls(**kw)

    @classmethod
    def from_run(cls, run_dir: str | Path, **overrides: Any) -> "TrainConfig":
        """The config saved in `run_dir`/config.json, set up to resume, with `overrides` applied."""
        saved = read_run_config(run_dir)
        saved.update({"save": str(run_dir), "resume": True, "force": False})
        saved.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(saved)

    def validate(self) -> None:
        """ValueError naming the first bad option (before anything is loaded or written)."""
        spec = get_dataset_spec(self.dataset)
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.decay is not None and not self.decay >= 0:
            raise ValueError(f"--decay must be >= 0, got {self.decay}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"--epochs must be an integer >= 1, got {self.epochs}")
        if str(self.opt).lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.opt!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        if str(self.adv).lower() not in ADVERSARIES:
            raise ValueError(f"unknown adversary {self.adv!r}; valid adversaries: {', '.join(ADVERSARIES)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"--tbsize must be an integer >= 1, got {self.batch_size}")
        if self.batch_size > spec.n_train:
            raise ValueError(f"--tbsize {self.batch_size} is larger than the {spec.n_train} training images of "
                             f"{spec.name}; use at most {spec.n_train}")
        for name in ("iters", "steps_per_epoch", "test_limit", "blocks"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("eps", "alpha"):
            v = getattr(self, name)
            if v is not None and not v >= 0:
                raise ValueError(f"--{name} must be >= 0 (units of {_unit_name(spec)}), got {v}")
        if self.eps is not None and self.eps * spec.eps_unit > 1:
            raise ValueError(f"--eps {self.eps} is more than the whole pixel range; for {spec.name} eps is given in "
                             f"units of {_unit_name(spec)}")
        if self.milestones is not None and any(not isinstance(m, int) or m < 1 for m in self.milestones):
            raise ValueError(f"--milestones must be positive epoch numbers, got {self.milestones}")
        for name in ("ball_copies", "eval_batch_size", "log_interval"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.save_every, int) or self.save_every < 0:
            raise ValueError(f"save_every must be an integer >= 0 (0: epoch ends only), got {self.save_every!r}")
        if self.resume and self.force:
            raise ValueError("--resume and --force contradict each other; pass one of them")
        if self.resume and not self.save:
            raise ValueError("--resume needs the run folder (sspnet train --resume RUN_DIR)")

    def resolved(self) -> "TrainConfig":
        """A copy with every None default filled in from the dataset spec and the original's rules."""
        spec = get_dataset_spec(self.dataset)
        c = dataclasses.replace(self, dataset=spec.name, opt=str(self.opt).lower(), adv=str(self.adv).lower())
        if c.lr is None:
            c.lr = default_lr(spec.arch, c.opt)
        if c.decay is None:
            c.decay = default_decay(spec.arch, c.opt)
        if c.milestones is None:
            c.milestones = default_milestones(spec.arch, c.epochs, c.adv != "none", c.lr, c.model)
        if c.iters is None:
            c.iters = spec.train_iters
        if c.eps is None:
            c.eps = _round(spec.train_eps / spec.eps_unit)
        if c.alpha is None:
            c.alpha = _round(spec.train_alpha / spec.eps_unit)
        if c.groups is not None:
            c.groups = [str(g) for g in c.groups]
        if c.save is None:
            c.save = str(Path("runs") / f"{spec.name}-{Path(str(c.model)).stem}-{c.adv}-seed{c.seed}")
        return c


def _round(v: float) -> float:
    return float(f"{v:.10g}")


def _unit_name(spec) -> str:
    return "1/255" if spec.eps_unit < 1 else "[0, 1] pixel values"


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The training options stored in run_dir/config.json (provenance removed)."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; start a run with `sspnet train --save DIR`")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not an sspnet training run folder")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    return dict(cfg.get("config", cfg))
