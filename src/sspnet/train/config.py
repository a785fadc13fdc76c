"""TrainConfig: the options of `sspnet train` / `sspnet.train.train`, their validation and defaults.

None means "the dataset's / the original code's default"; `resolved()` fills them in (the values written to
config.json). eps / alpha are in pixel units [0, 1] on every dataset; the CLI converts its own units (1/255
on cifar10/tiny) at its edge. `read_run_config` also reads config.json files written before that change.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sspnet.attacks import ThreatModel, dataset_threat
from sspnet.data.specs import DatasetSpec, get_dataset_spec
from sspnet.train.optim import OPTIMIZERS, SCHEDULES, default_decay, default_lr, default_milestones
from sspnet.train.options import (
    DEFAULT_DATASET,
    canonical_name,
    default_recipe,
    flag,
    to_cli_units,
    unit_name,
)
from sspnet.train.run_config import resume_options
from sspnet.train.step import ADVERSARIES, adversary_threat

SELECT_ON = ("val", "test", "none")
# Fields that define the computation: a resumed run must agree with the folder on all of them.
IDENTITY_FIELDS = (
    "dataset",
    "model",
    "groups",
    "blocks",
    "norm",
    "init",
    "adv",
    "opt",
    "lr",
    "decay",
    "milestones",
    "schedule",
    "batch_size",
    "steps",
    "eps",
    "alpha",
    "seed",
    "steps_per_epoch",
    "craft_eval",
    "ball_copies",
    "init_from",
    "clean_metrics",
    "val_split",
    "select_on",
    "train_quantize",
    "eps_warmup",
    "step_size",
    "arch",
)
# what runs whose config.json predates an option did (all images trained on, selection on test, no rounding)
CONFIG_FORMAT_VERSION = 2  # config.json: 2 = eps/alpha in pixel units; absent = CLI units (+ eps_px/alpha_px)
# the type every option must have (None allowed where the default is None): a config file's `epochs: true` or
# `quiet: "no"` is refused, not read as 1 or as true
_STR, _PATH, _INT, _NUM, _BOOL = "a string", "a path", "an integer", "a number", "true or false"
OPTION_TYPES = {
    **dict.fromkeys(("dataset", "opt", "schedule", "adv", "device"), _STR),
    **dict.fromkeys(("norm", "init", "select_on", "arch"), _STR),
    **dict.fromkeys(("data_root", "save", "init_from"), _PATH),
    "model": "a scheme name or scheme file",
    **dict.fromkeys(
        (
            "blocks",
            "steps",
            "steps_per_epoch",
            "eval_n_images",
            "batch_size",
            "epochs",
            "ball_copies",
            "seed",
            "eval_batch_size",
            "save_every",
            "log_interval",
        ),
        _INT,
    ),
    **dict.fromkeys(("lr", "decay", "eps", "alpha", "val_split", "eps_warmup", "step_size"), _NUM),
    **dict.fromkeys(
        (
            "resume",
            "force",
            "quiet",
            "tensorboard",
            "craft_eval",
            "clean_metrics",
            "activation_checkpointing",
            "train_quantize",
            "sync_bn",
            "amp",
            "channels_last",
        ),
        _BOOL,
    ),
    "groups": "a list of schemes",
    "milestones": "a list of integers",
}


@dataclass
class TrainConfig:
    """Everything `train` needs. None means "the dataset's / original code's default" (resolved in config.json).

    eps / alpha: the training adversary's radius and PGD step, pixel units [0, 1] (cifar10's 8/255 is 8/255;
    `sspnet train --train-eps 8` converts). steps: PGD steps of the training adversary. batch_size is the global
    batch (split across ranks under torchrun). opt / batch_size / schedule / lr left at None follow
    `default_recipe`, each on its own: on mnist5k Adam, lr 2e-3, batch 8, one-cycle, elsewhere the original's
    SGD, batch 128, multistep; an opt other than the recipe's takes `default_lr`. steps_per_epoch caps the steps
    of every epoch (small-budget runs). save_every: steps between mid-epoch last.pt saves (0: epoch ends only).
    init_from: a checkpoint or run folder whose weights start the run (fine-tuning; same model config).
    eval_n_images: evaluate each epoch on that many class-stratified test images (`sspnet.data.subsets`).
    val_split: fraction of the training images held out as a class-stratified validation split (a function of
    seed; `sspnet.data.subsets.holdout_indices`), never trained on; 0: none. select_on: the split that chooses
    model_acc.pt / model_loss.pt: val | test (the original's; optimistic when robustness is then measured on
    the test set) | none (only model_final.pt); None: val with a validation split, else none.
    train_quantize: round the fgsm / pgd / fast training adversary's examples to the 8-bit grid after the
    random start and every step (the original's; ball's noisy copies are never rounded, as the original).
    sync_bn: under DDP, BatchNorm uses the statistics of the global batch (`sspnet.train.syncbn`), so K
    processes train the model one process would.
    eps_warmup: epochs (may be fractional) over which the training adversary's eps and alpha grow linearly from
    eps / (warmup steps) to their full value, step by step (`step.warmup_fraction`); 0: full eps from the start.
    step_size: h of every RK block (`sspnet.nn.create_model`): y = x + h F(x) for res, h * beta for a scheme.
    arch: the network architecture (mnist | cifar10 | tinyimagenet); None: the dataset's. The recipe (lr,
    decay, milestones) still follows the dataset.
    """

    dataset: str = DEFAULT_DATASET
    data_root: str | None = None
    model: str = "res"
    groups: list[str] | None = None
    blocks: int | None = None
    norm: str | None = None
    init: str | None = None
    lr: float | None = None
    decay: float | None = None
    batch_size: int | None = None
    epochs: int = 200
    opt: str | None = None
    milestones: list[int] | None = None
    schedule: str | None = None
    adv: str = "none"
    steps: int | None = None
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
    eval_n_images: int | None = None
    eval_batch_size: int = 500
    save_every: int = 100
    log_interval: int = 20
    amp: bool | None = None
    channels_last: bool | None = None
    val_split: float = 0.1
    select_on: str | None = None
    train_quantize: bool = True
    sync_bn: bool = True
    eps_warmup: float = 0.0
    step_size: float = 1.0
    arch: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (config.json, compare's plans); keys may use dashes, the original's or old names.

        Values are taken as they are: eps / alpha in pixel units.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {}
        for key, value in d.items():
            k = canonical_name(key)
            if k not in names:
                raise ValueError(f"unknown training option {key!r}; valid options: {', '.join(sorted(names))}")
            kw[k] = value
        return cls(**kw)

    @classmethod
    def from_run(cls, run_dir: str | Path, **overrides: Any) -> TrainConfig:
        """The config saved in `run_dir`/config.json, set up to resume, with `overrides` applied (pixel units).

        Defaults that depend on epochs (`EPOCH_DEPENDENT`) are derived again for the new --epochs."""
        saved = resume_options(run_dir)
        saved.update({"save": str(run_dir), "resume": True, "force": False})
        saved.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(saved)

    def validate(self) -> None:
        """ValueError naming the first bad option (its CLI flag) before anything is loaded or written."""
        self._validate_types()
        spec = get_dataset_spec(self.dataset)
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.decay is not None and not (self.decay >= 0 and math.isfinite(self.decay)):
            raise ValueError(f"--decay must be a finite number >= 0, got {self.decay}")
        if self.save is not None and not str(self.save).strip():
            raise ValueError(
                f"{flag('save')} must name a run folder, got an empty string; pass {flag('save')} DIR "
                "(or leave it out for runs/DATASET-MODEL-ADV-seedSEED)"
            )
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"--epochs must be an integer >= 1, got {self.epochs}")
        if self.opt is not None and str(self.opt).lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.opt!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        if str(self.adv).lower() not in ADVERSARIES:
            raise ValueError(f"unknown adversary {self.adv!r}; valid adversaries: {', '.join(ADVERSARIES)}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
        batch = self.batch_size if self.batch_size is not None else default_recipe(spec.name, self.opt)["batch_size"]
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"{flag('batch_size')} must be an integer >= 1, got {self.batch_size}")
        n_fit = self._validate_selection(spec)
        if batch > n_fit:
            held = f" ({spec.n_train} less the --val-split {self.val_split:g} held out)" if n_fit < spec.n_train else ""
            raise ValueError(
                f"{flag('batch_size')} {batch} is larger than the {n_fit} training images of "
                f"{spec.name}{held}; use at most {n_fit}"
            )
        for name in ("steps", "steps_per_epoch", "eval_n_images", "blocks"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{flag(name)} must be an integer >= 1, got {v!r}")
        self._validate_radius(spec)
        if self.milestones is not None and any(not isinstance(m, int) or m < 1 for m in self.milestones):
            raise ValueError(f"--milestones must be positive epoch numbers, got {self.milestones}")
        for name in ("ball_copies", "eval_batch_size", "log_interval"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{flag(name)} must be an integer >= 1, got {v!r}")
        if isinstance(self.save_every, bool) or not isinstance(self.save_every, int) or self.save_every < 0:
            raise ValueError(f"--save-every must be an integer >= 0 (0: epoch ends only), got {self.save_every!r}")
        if self.arch is not None:
            from sspnet.nn.architectures import ARCHITECTURES

            if self.arch not in ARCHITECTURES:
                raise ValueError(f"unknown --arch {self.arch!r}; valid architectures: {', '.join(ARCHITECTURES)}")
        if not (math.isfinite(self.step_size) and self.step_size >= 0):
            raise ValueError(
                f"--step-size must be a finite number >= 0 (1: the scheme as written), got {self.step_size!r}"
            )
        if self.resume and self.force:
            raise ValueError("--resume and --force contradict each other; pass one of them")
        if self.resume and not self.save:
            raise ValueError("--resume needs the run folder (sspnet train --resume RUN_DIR)")

    def _validate_types(self) -> None:
        """ValueError naming the option (its config key and flag), its value and the type it must have."""
        for name, expected in OPTION_TYPES.items():
            v = getattr(self, name)
            if v is None and (name not in _NOT_NONE):
                continue
            if not _has_type(v, expected):
                hint = ""
                if isinstance(v, str) and expected in (_INT, _NUM):
                    hint = " (a string: write the number without quotes; in YAML 1e-3 is text, 1.0e-3 a number)"
                elif isinstance(v, str) and expected == _BOOL:
                    hint = " (a string: write true or false without quotes)"
                raise ValueError(f"{flag(name)} must be {expected} (config key {name}), got {v!r}{hint}")

    def _validate_selection(self, spec: DatasetSpec) -> int:
        """--val-split / --select-on; returns the number of training images trained on."""
        v = self.val_split
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(
                f"--val-split must be a fraction in [0, 1) of the training images (0: no validation split), got {v!r}"
            )
        n_val = int(round(v * spec.n_train))
        if v and not n_val:
            raise ValueError(
                f"--val-split {v:g} holds out no image of the {spec.n_train} training images of "
                f"{spec.name}; pass 0 (no validation split) or at least {1 / spec.n_train:.2g}"
            )
        if self.select_on is not None and self.select_on not in SELECT_ON:
            raise ValueError(f"unknown --select-on {self.select_on!r}; valid: {', '.join(SELECT_ON)}")
        if self.select_on == "val" and not n_val:
            raise ValueError(
                "--select-on val needs a validation split but --val-split is 0; pass --val-split > 0 "
                "(e.g. 0.1), --select-on test (the original's; optimistic) or --select-on none"
            )
        return spec.n_train - n_val

    def _validate_radius(self, spec: DatasetSpec) -> None:
        """eps / alpha: pixel units here; the messages give the value as the --train-eps / --train-alpha flag
        takes it."""
        unit = unit_name(spec)
        for name in ("eps", "alpha"):
            v, f = getattr(self, name), flag(name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{f} must be a number (on {spec.name} in units of {unit}), got {v!r}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(
                    f"{f} must be a finite number >= 0 (on {spec.name} in units of {unit}), "
                    f"got {to_cli_units(v, spec):g}"
                )
            if v > 1:
                raise ValueError(
                    f"{f} {to_cli_units(v, spec):g} (TrainConfig.{name}={v:g} in pixel units) is "
                    f"more than the whole pixel range; on {spec.name} {f} is in units of {unit}, "
                    f"at most {to_cli_units(1.0, spec):g}"
                )
        if self.alpha == 0 and str(self.adv).lower() == "pgd":
            raise ValueError(
                f"{flag('alpha')} must be > 0 for --adv pgd (the PGD step, on {spec.name} in units of {unit})"
            )
        w = self.eps_warmup
        if not (0 <= w <= self.epochs and math.isfinite(w)):
            raise ValueError(
                f"--eps-warmup must be a number of epochs in [0, --epochs {self.epochs}] (0: the full "
                f"eps from the first step), got {w!r}"
            )

    def resolved(self) -> TrainConfig:
        """A copy with every None default filled in from the dataset spec and the original's rules."""
        spec = get_dataset_spec(self.dataset)
        recipe = default_recipe(spec.name, self.opt)
        opt = recipe["opt"] if self.opt is None else self.opt
        c = dataclasses.replace(self, dataset=spec.name, opt=str(opt).lower(), adv=str(self.adv).lower())
        if c.batch_size is None:
            c.batch_size = recipe["batch_size"]
        if c.schedule is None:
            c.schedule = recipe["schedule"]
        if c.lr is None:
            c.lr = recipe.get("lr") or default_lr(spec.arch, c.opt)
        if c.decay is None:
            c.decay = default_decay(spec.arch, c.opt)
        if c.milestones is None:
            c.milestones = default_milestones(spec.arch, c.epochs, c.adv != "none", c.lr, c.model)
        train = dataset_threat(spec.name)  # the dataset's training threat model
        if c.steps is None:
            c.steps = train.steps
        if c.eps is None:
            c.eps = train.eps
        if c.alpha is None:
            c.alpha = train.alpha
        if c.groups is not None:
            c.groups = [str(g) for g in c.groups]
        if c.save is None:
            c.save = str(Path("runs") / f"{spec.name}-{Path(str(c.model)).stem}-{c.adv}-seed{c.seed}")
        if c.select_on is None:
            c.select_on = "val" if c.val_split else "none"
        c.val_split = float(c.val_split)
        return c

    def threat(self) -> ThreatModel | None:
        """The training adversary's threat model with the dataset's defaults filled in (`adversary_threat`
        of the resolved adv, eps, alpha, steps, train_quantize); None for adv none."""
        c = self.resolved()
        return adversary_threat(c.adv, c.eps, c.alpha, c.steps, c.train_quantize)

    def defaulted(self) -> list[str]:
        """The options left at None that `resolved()` fills in (config.json records them)."""
        r = self.resolved()
        return [
            f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None and getattr(r, f.name) is not None
        ]


_NOT_NONE = {f.name for f in dataclasses.fields(TrainConfig) if f.default is not None}


def _has_type(v: Any, expected: str) -> bool:
    """Whether `v` is of the kind OPTION_TYPES names (bools are neither integers nor numbers here)."""
    if isinstance(v, bool):
        return expected == _BOOL
    if expected == _STR:
        return isinstance(v, str)
    if expected in (_PATH, "a scheme name or scheme file"):
        return isinstance(v, (str, os.PathLike))
    if expected == _INT:
        return isinstance(v, numbers.Integral)
    if expected == _NUM:
        return isinstance(v, numbers.Real)
    if expected == "a list of schemes":
        return isinstance(v, (list, tuple)) and all(isinstance(g, (str, os.PathLike)) for g in v)
    if expected == "a list of integers":
        return isinstance(v, (list, tuple)) and all(
            isinstance(m, numbers.Integral) and not isinstance(m, bool) for m in v
        )
    return False
