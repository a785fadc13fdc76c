"""`sspnet train`: argparse -> TrainConfig -> sspnet.train.train -> exit code.

Precedence: TrainConfig defaults < --config FILE (YAML/JSON) < flags given on the command line. With
--resume RUN_DIR the folder's config.json takes the place of the defaults (flags may extend --epochs etc.;
defaults that depend on --epochs, the milestones, are derived again for the new budget).
Flags are the CLI's vocabulary (`sspnet.cli._options.VOCABULARY`; the original's names such as --eps, --iters,
--block, --tbsize, --save stay as aliases, in config files too) in the original's units (--train-eps 8 on
cifar10/tiny means 8/255); this module converts them to TrainConfig's pixel units.
Exit codes: 0 done, 1 non-finite loss (last good last.pt kept), 2 bad input, 130 interrupted (last.pt saved).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sspnet.cli._options import (
    add_flag,
    add_option,
    add_threads,
    field_default,
    per_dataset,
)
from sspnet.nn.architectures import get_architecture

# CLI dest or config-file key -> TrainConfig field: the canonical flags (sspnet.cli._options.VOCABULARY) and
# the original's names (--block, --tbsize, --iters, --eps, --alpha, --norm, --save, --test-limit, --eval-bsize)
_DEST = {
    "norm_layer": "norm",
    "train_pgd_steps": "steps",
    "train_eps": "eps",
    "train_alpha": "alpha",
    "out": "save",
    "checkpoint": "activation_checkpointing",
    "block": "blocks",
    "tbsize": "batch_size",
    "eval_bsize": "eval_batch_size",
    "iters": "steps",
    "test_limit": "eval_n_images",
}
# flags of train only: flag -> (help, the default in words (None: TrainConfig's field), argparse settings)
_OWN: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "--model": ("scheme: res | ssp2 | ssp3 | ark | midrk2 | any registered scheme, or a scheme file", None, {}),
    "--groups": (
        "one scheme per block group, comma separated (e.g. ark,res,ssp2 on cifar10)",
        "--model in every group",
        {},
    ),
    "--step-size": (
        "step size h of every RK block: y = x + h F(x) for res, h * beta for a scheme (0: identity blocks)",
        None,
        {"type": float, "metavar": "H"},
    ),
    "--arch": (
        "network architecture: mnist | cifar10 (3 groups) | tinyimagenet (4 groups), on the dataset's images",
        "the dataset's",
        {},
    ),
    "--init": ("original | torch | kaiming", "", {}),
    "--lr": (
        "learning rate",
        "{lr}; with an --opt other than the recipe's, the original's lr for that optimizer (table below)",
        {"type": float},
    ),
    "--decay": ("weight decay", "5e-4 with sgd on cifar10/tiny, else 0", {"type": float}),
    "--epochs": ("epochs", None, {"type": int}),
    "--opt": ("sgd | adam | rms (replaces the optimizer only: batch size and schedule stay)", "{opt}", {}),
    "--milestones": ("epochs where the lr is multiplied by 0.1, comma separated", "the original's", {}),
    "--schedule": ("multistep | cyclic (one triangular cycle, peak at 2/5)", "{schedule}", {}),
    "--adv": ("training adversary: none | fgsm | pgd | ball | fast", None, {}),
    "--eps-warmup": (
        (
            "epochs over which the training eps and alpha grow linearly to their full value (0: full eps "
            "from the first step)"
        ),
        None,
        {"type": float},
    ),
    "--ball-copies": ("noisy copies per image for --adv ball", None, {"type": int}),
    "--steps-per-epoch": ("cap on optimizer steps per epoch", "none, every batch", {"type": int}),
    "--init-from": ("start from the weights of this checkpoint or run folder", "fresh weights from --seed", {}),
    "--save-every": ("steps between mid-epoch last.pt saves (0 off)", None, {"type": int}),
    "--log-interval": ("steps between progress-bar updates", None, {"type": int}),
    "--val-split": (
        (
            "fraction of the training images held out (class-stratified, fixed by --seed) as the validation "
            "split that selects model_acc.pt / model_loss.pt (0: train on all, no validation split)"
        ),
        None,
        {"type": float},
    ),
    "--select-on": (
        (
            "split that selects model_acc.pt / model_loss.pt: val | test (the original's; optimistic for "
            "test-set robustness) | none (only model_final.pt)"
        ),
        ("val with a validation split, none with --val-split 0"),
        {},
    ),
    "--train-quantize": (
        ("round fgsm / pgd / fast training adversarial examples to 8-bit levels after each step, as the original"),
        None,
        {"action": argparse.BooleanOptionalAction},
    ),
    "--sync-bn": (
        (
            "under torchrun, BatchNorm uses the statistics of the whole global batch, so K processes train "
            "the model one process would (--no-sync-bn: per-rank statistics)"
        ),
        None,
        {"action": argparse.BooleanOptionalAction},
    ),
    "--amp": ("mixed precision", "on CUDA", {"action": argparse.BooleanOptionalAction}),
    "--channels-last": (
        "channels_last memory format",
        "on CUDA, and on CPU for models without GroupNorm",
        {"action": argparse.BooleanOptionalAction},
    ),
}
_SWITCHES = {
    "--force": "overwrite an existing run folder",
    "--tensorboard": "TensorBoard scalars + adversarial images (RUN/tb)",
    "--craft-eval": "craft training adversarial examples in eval mode (default: train mode, as the original)",
    "--clean-metrics": "adversarial training: also log the clean loss/accuracy "
    "of each training batch (one extra forward per step: ~5%% of a PGD-7 step, ~15%% of a FastFGSM step)",
    "--checkpoint": "activation checkpointing (less memory, more compute)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from sspnet.cli._options import TableFormatter
    from sspnet.cli._recipes import recipe_default, recipe_table
    from sspnet.train import TrainConfig

    p = subparsers.add_parser(
        "train",
        help="train an SSP network (standard or adversarial training)",
        description="Train an SSP / ResNet model; writes a run folder with config.json, metrics.jsonl, train.log, "
        "model_acc.pt / model_loss.pt (best on the validation split held out of the training images), "
        "model_final.pt and last.pt. Unset options take the original code's per-dataset defaults, except "
        "on the embedded mnist5k, whose own recipe fills the options it fixes (the original's SGD recipe "
        "learns little on 4,000 digits); each flag replaces its own value only (the table below). "
        "Multi-process: torchrun --nproc_per_node=K -m sspnet train ...",
        epilog=recipe_table(),
        formatter_class=TableFormatter,
    )
    recipe = {name: recipe_default(name) for name in ("lr", "opt", "schedule")}

    def own(flag: str) -> None:  # every default None: TrainConfig's (or the resumed run's) fills it in
        help, words, settings = _OWN[flag]
        name = flag[2:].replace("-", "_")
        add_option(
            p,
            flag,
            help,
            default=None if words else field_default(TrainConfig, name),
            shown=words and words.format(**recipe),
            argparse_default=None,
            **settings,
        )

    def shared(concept: str, words: str | None = None, **kwargs) -> None:
        name = _DEST.get(concept, concept)
        add_flag(
            p,
            "train",
            concept,
            default=None if words else field_default(TrainConfig, name),
            shown=words,
            argparse_default=None,
            **kwargs,
        )

    shared("dataset")
    shared("data_root", "$SSPNET_DATA or ./data")
    for flag in ("--model", "--groups", "--step-size", "--arch"):
        own(flag)
    shared("blocks", per_dataset(lambda spec: get_architecture(spec.arch).blocks))
    shared("norm_layer", per_dataset(lambda spec: get_architecture(spec.arch).norm))
    add_option(p, "--init", _OWN["--init"][0], shown=per_dataset(lambda spec: get_architecture(spec.arch).init))
    own("--lr")
    own("--decay")
    shared("batch_size", recipe_default("batch_size"))
    for flag in ("--epochs", "--opt", "--milestones", "--schedule", "--adv"):
        own(flag)
    shared("train_pgd_steps", per_dataset(lambda spec: spec.train_iters))
    shared("train_eps", per_dataset(lambda spec: spec.train_eps / spec.eps_unit))
    shared("train_alpha", per_dataset(lambda spec: spec.train_alpha / spec.eps_unit))
    own("--eps-warmup")
    own("--ball-copies")
    shared("out", "runs/DATASET-MODEL-ADV-seedSEED")
    for concept in ("seed", "device", "quiet"):
        shared(concept)
    p.add_argument(
        "--config",
        help="YAML or JSON file of options (keys as the flags, canonical or old names); "
        "command-line flags override it (default: none)",
    )
    p.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt (default: a new run)"
    )
    for flag, help in _SWITCHES.items():
        p.add_argument(flag, action="store_true", default=None, help=help)
    for flag in ("--steps-per-epoch", "--init-from"):
        own(flag)
    shared("eval_n_images", "all")
    shared("eval_batch_size")
    for flag in (
        "--save-every",
        "--log-interval",
        "--val-split",
        "--select-on",
        "--train-quantize",
        "--sync-bn",
        "--amp",
        "--channels-last",
    ):
        own(flag)
    add_threads(p, "train", "per process; not part of the run's configuration")
    p.set_defaults(handler=run)


def _split(text: Any, kind: type, flag: str) -> list | None:
    if text is None or isinstance(text, list):
        return text
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise ValueError(f"{flag} takes a comma-separated list of {kind.__name__}s, got {text!r}") from None


def _to_pixels(options: dict[str, Any], dataset: str) -> dict[str, Any]:
    """eps / alpha of flags or a config file (the original's units: 1/255 on cifar10/tiny) -> pixel units."""
    from sspnet.data.specs import get_dataset_spec
    from sspnet.train.options import to_pixels

    spec = get_dataset_spec(dataset)
    for name in ("eps", "alpha"):
        v = options.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"--train-{name} must be a number, got {v!r}")
        options[name] = to_pixels(v, spec)
    return options


def config_from_args(args: argparse.Namespace):
    """The TrainConfig for parsed flags (defaults < --config file < flags; resume starts from config.json).

    eps / alpha of flags and of the config file are in the original's units and converted to pixel units here
    (those of a resumed config.json already are).
    """
    return config_and_sources(args)[0]


def config_and_sources(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """`config_from_args` and the options given, {option: "flag" | "config file"} (`sspnet.train.sources`;
    --resume gives the run folder and resume: the other options of a resumed run keep their recorded source)."""
    from sspnet.io.jsonio import read_mapping_file
    from sspnet.train import TrainConfig
    from sspnet.train.options import canonical_name
    from sspnet.train.run_config import resume_options
    from sspnet.train.sources import CONFIG_FILE, FLAG

    skip = {"command", "handler", "config", "resume", "threads"}
    base: dict[str, Any] = {}
    if args.resume:
        base = resume_options(args.resume)
        if args.out and Path(args.out) != Path(args.resume):
            raise ValueError(f"--resume {args.resume} and --out {args.out} name different folders; pass only --resume")
    given: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if args.config:
        for key, value in read_mapping_file(args.config, what="config file").items():
            given[canonical_name(_DEST.get(key.replace("-", "_"), key))] = value
        sources.update(dict.fromkeys(given, CONFIG_FILE))
    flags = {_DEST.get(k, k): v for k, v in vars(args).items() if k not in skip and v is not None}
    given.update(flags)
    sources.update(dict.fromkeys(flags, FLAG))
    base.update(_to_pixels(given, given.get("dataset", base.get("dataset", TrainConfig.dataset))))
    if args.resume:
        base.update(save=str(args.resume), resume=True)
        sources.update(save=FLAG, resume=FLAG)
    for key, kind, flag in (("groups", str, "--groups"), ("milestones", int, "--milestones")):
        if key in base:
            base[key] = _split(base[key], kind, flag)
    return TrainConfig.from_dict(base), {canonical_name(k): v for k, v in sources.items()}


def run(args: argparse.Namespace) -> int:
    from sspnet.io.runlayout import RunLayout
    from sspnet.train import NonFiniteLossError, train

    cfg, given = config_and_sources(args)
    try:
        result = train(cfg, given)
    except NonFiniteLossError as exc:
        print(f"sspnet train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        layout = RunLayout(cfg.resolved().save)
        if layout.state_file.is_file():
            print(
                f"sspnet train: interrupted; {layout.state_file} holds the last saved state, continue with: "
                f"sspnet train --resume {layout.path}",
                file=sys.stderr,
            )
        else:  # before the first save: there is nothing to resume
            print(
                f"sspnet train: interrupted before the run saved any state; start it again with the same "
                f"command{'' if cfg.force else ' and --force'}",
                file=sys.stderr,
            )
        return 130
    if not cfg.quiet and int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one summary line, global rank 0's
        f = result.final
        if f:
            best = "" if result.best_acc is None else f" (best {result.selected_on} acc {result.best_acc:.2f}%)"
            print(
                f"{result.run_dir}: {result.epochs_completed} epochs, test acc {f['test_acc']:.2f}%, test loss "
                f"{f['test_loss']:.4f}{best}"
            )
        else:
            print(f"{result.run_dir}: nothing to do ({result.epochs_completed} epochs already done)")
    return 0
