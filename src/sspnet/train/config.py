"""TrainConfig: the options of `sspnet train` / `sspnet.train.train`, their validation and defaults.

None means "the dataset's / the original code's default"; `resolved()` fills them in (the values written to
config.json). eps / alpha are in pixel units [0, 1] on every dataset; the CLI converts its own units (1/255
on cifar10/tiny) at its edge. `read_run_config` also reads config.json files written before that change.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sspnet.data.specs import DatasetSpec, get_dataset_spec
from sspnet.train.optim import OPTIMIZERS, SCHEDULES, default_decay, default_lr, default_milestones

ADVERSARIES = ("none", "fgsm", "pgd", "ball", "fast")
SELECT_ON = ("val", "test", "none")
# Fields that define the computation: a resumed run must agree with the folder on all of them.
IDENTITY_FIELDS = ("dataset", "model", "groups", "blocks", "norm", "init", "adv", "opt", "lr", "decay", "milestones",
                   "schedule", "batch_size", "steps", "eps", "alpha", "seed", "steps_per_epoch", "craft_eval",
                   "ball_copies", "init_from", "clean_metrics", "val_split", "select_on", "train_quantize")
# what runs whose config.json predates an option did (all images trained on, selection on test, no rounding)
LEGACY_VALUES = {"val_split": 0.0, "select_on": "test", "train_quantize": False}
# defaults that depend on --epochs: a resumed run with a new --epochs derives them again (`resume_options`)
EPOCH_DEPENDENT = ("milestones",)
# other names accepted by `TrainConfig.from_dict`: the original code's and those of earlier sspnet versions
ALIASES = {"tbsize": "batch_size", "block": "blocks", "checkpoint": "activation_checkpointing",
           "data-root": "data_root", "iters": "steps", "test_limit": "eval_n_images"}
CONFIG_FORMAT_VERSION = 2  # config.json: 2 = eps/alpha in pixel units; absent = CLI units (+ eps_px/alpha_px)


@dataclass
class TrainConfig:
    """Everything `train` needs. None means "the dataset's / original code's default" (resolved in config.json).

    eps / alpha: the training adversary's radius and PGD step, pixel units [0, 1] (cifar10's 8/255 is 8/255;
    `sspnet train --eps 8` converts). steps: PGD steps of the training adversary. batch_size is the global
    batch (split across ranks under torchrun). steps_per_epoch caps the optimizer steps of every epoch
    (small-budget runs). save_every: steps between mid-epoch last.pt saves (0: epoch ends only).
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
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
    def from_run(cls, run_dir: str | Path, **overrides: Any) -> "TrainConfig":
        """The config saved in `run_dir`/config.json, set up to resume, with `overrides` applied (pixel units).

        Defaults that depend on epochs (`EPOCH_DEPENDENT`) are derived again for the new --epochs."""
        saved = resume_options(run_dir)
        saved.update({"save": str(run_dir), "resume": True, "force": False})
        saved.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(saved)

    def validate(self) -> None:
        """ValueError naming the first bad option (its CLI flag) before anything is loaded or written."""
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
        n_fit = self._validate_selection(spec)
        if self.batch_size > n_fit:
            held = f" ({spec.n_train} less the --val-split {self.val_split:g} held out)" if n_fit < spec.n_train else ""
            raise ValueError(f"--tbsize {self.batch_size} is larger than the {n_fit} training images of "
                             f"{spec.name}{held}; use at most {n_fit}")
        for flag, v in (("--iters", self.steps), ("--steps-per-epoch", self.steps_per_epoch),
                        ("--test-limit", self.eval_n_images), ("--block", self.blocks)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{flag} must be an integer >= 1, got {v!r}")
        self._validate_radius(spec)
        if self.milestones is not None and any(not isinstance(m, int) or m < 1 for m in self.milestones):
            raise ValueError(f"--milestones must be positive epoch numbers, got {self.milestones}")
        for flag, v in (("--ball-copies", self.ball_copies), ("--eval-bsize", self.eval_batch_size),
                        ("--log-interval", self.log_interval)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{flag} must be an integer >= 1, got {v!r}")
        if isinstance(self.save_every, bool) or not isinstance(self.save_every, int) or self.save_every < 0:
            raise ValueError(f"--save-every must be an integer >= 0 (0: epoch ends only), got {self.save_every!r}")
        if self.resume and self.force:
            raise ValueError("--resume and --force contradict each other; pass one of them")
        if self.resume and not self.save:
            raise ValueError("--resume needs the run folder (sspnet train --resume RUN_DIR)")

    def _validate_selection(self, spec: DatasetSpec) -> int:
        """--val-split / --select-on; returns the number of training images trained on."""
        v = self.val_split
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"--val-split must be a fraction in [0, 1) of the training images (0: no validation "
                             f"split), got {v!r}")
        n_val = int(round(v * spec.n_train))
        if v and not n_val:
            raise ValueError(f"--val-split {v:g} holds out no image of the {spec.n_train} training images of "
                             f"{spec.name}; pass 0 (no validation split) or at least {1 / spec.n_train:.2g}")
        if self.select_on is not None and self.select_on not in SELECT_ON:
            raise ValueError(f"unknown --select-on {self.select_on!r}; valid: {', '.join(SELECT_ON)}")
        if self.select_on == "val" and not n_val:
            raise ValueError("--select-on val needs a validation split but --val-split is 0; pass --val-split > 0 "
                             "(e.g. 0.1), --select-on test (the original's; optimistic) or --select-on none")
        return spec.n_train - n_val

    def _validate_radius(self, spec: DatasetSpec) -> None:
        """eps / alpha: pixel units here; the messages give the value as the --eps / --alpha flag takes it."""
        unit = unit_name(spec)
        for name in ("eps", "alpha"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"--{name} must be a number (on {spec.name} in units of {unit}), got {v!r}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"--{name} must be a finite number >= 0 (on {spec.name} in units of {unit}), "
                                 f"got {to_cli_units(v, spec):g}")
            if v > 1:
                raise ValueError(f"--{name} {to_cli_units(v, spec):g} (TrainConfig.{name}={v:g} in pixel units) is "
                                 f"more than the whole pixel range; on {spec.name} --{name} is in units of {unit}, "
                                 f"at most {to_cli_units(1.0, spec):g}")
        if self.alpha == 0 and str(self.adv).lower() == "pgd":
            raise ValueError(f"--alpha must be > 0 for --adv pgd (the PGD step, on {spec.name} in units of {unit})")

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
        if c.steps is None:
            c.steps = spec.train_iters
        if c.eps is None:
            c.eps = spec.train_eps
        if c.alpha is None:
            c.alpha = spec.train_alpha
        if c.groups is not None:
            c.groups = [str(g) for g in c.groups]
        if c.save is None:
            c.save = str(Path("runs") / f"{spec.name}-{Path(str(c.model)).stem}-{c.adv}-seed{c.seed}")
        if c.select_on is None:
            c.select_on = "val" if c.val_split else "none"
        c.val_split = float(c.val_split)
        return c

    def defaulted(self) -> list[str]:
        """The options left at None that `resolved()` fills in (config.json records them)."""
        r = self.resolved()
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None
                and getattr(r, f.name) is not None]


def canonical_name(key: str) -> str:
    """The TrainConfig field for an option name: dashes -> underscores, original / old names mapped."""
    k = ALIASES.get(key, key.replace("-", "_"))
    return ALIASES.get(k, k)


def unit_name(spec: DatasetSpec) -> str:
    """The CLI unit of eps / alpha on a dataset, in words."""
    return "1/255" if spec.eps_unit < 1 else "[0, 1] pixel values"


def to_pixels(value: float, spec: DatasetSpec) -> float:
    """eps / alpha as the CLI takes them (the original's units, spec.eps_unit) -> pixel units [0, 1]."""
    return float(value) * spec.eps_unit


def to_cli_units(value: float, spec: DatasetSpec) -> float:
    """Pixel units -> the original's CLI units (8/255 -> 8 on cifar10), rounded to 10 significant digits."""
    return float(f"{float(value) / spec.eps_unit:.10g}")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The training options stored in run_dir/config.json: canonical field names, eps / alpha in pixel units.

    A config.json of an earlier version (eps / alpha in CLI units beside top-level eps_px / alpha_px, old
    option names, no val_split / select_on / train_quantize: `LEGACY_VALUES`) is converted. FileNotFoundError
    naming the folder when it is no run folder.
    """
    doc = _read_doc(run_dir)
    options = doc.get("config", doc)
    cfg = {canonical_name(k): v for k, v in options.items()} if isinstance(options, dict) else {}
    if "config" in doc and doc.get("format_version") is None:  # before pixel units: eps_px / alpha_px are exact
        for name in ("eps", "alpha"):
            if doc.get(f"{name}_px") is not None:
                cfg[name] = doc[f"{name}_px"]
            elif cfg.get(name) is not None:
                cfg[name] = to_pixels(cfg[name], get_dataset_spec(cfg.get("dataset", TrainConfig.dataset)))
    for name, value in LEGACY_VALUES.items():
        cfg.setdefault(name, value)
    return cfg


def read_run_meta(run_dir: str | Path) -> dict[str, Any]:
    """What config.json records besides the options: {"defaulted": options filled from defaults,
    "budget_history": [{"epochs", "at_epoch", "at_step"[, "milestones"]}, ...]} (empty lists when absent)."""
    doc = _read_doc(run_dir)
    return {"defaulted": list(doc.get("defaulted") or []), "budget_history": list(doc.get("budget_history") or [])}


def resume_options(run_dir: str | Path) -> dict[str, Any]:
    """`read_run_config` less the options whose stored value is an epoch-dependent default (`EPOCH_DEPENDENT`):
    a run resumed with a new --epochs derives them as a fresh run with that budget would."""
    cfg = read_run_config(run_dir)
    for name in set(EPOCH_DEPENDENT) & set(read_run_meta(run_dir)["defaulted"]):
        cfg.pop(name, None)
    return cfg


def _read_doc(run_dir: str | Path) -> dict[str, Any]:
    """run_dir/config.json as a dict; FileNotFoundError / ValueError naming the folder or file."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; start a run with `sspnet train --save DIR`")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not an sspnet training run folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return doc
