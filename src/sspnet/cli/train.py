"""`sspnet train`: argparse -> TrainConfig -> sspnet.train.train -> exit code.

Precedence: TrainConfig defaults < --config FILE (YAML/JSON) < flags given on the command line. With
--resume RUN_DIR the folder's config.json takes the place of the defaults (flags may extend --epochs etc.;
defaults that depend on --epochs, the milestones, are derived again for the new budget).
Flags and config files use the original code's names and units (--eps 8 on cifar10/tiny means 8/255); this
module converts them to TrainConfig's pixel units.
Exit codes: 0 done, 1 non-finite loss (last good last.pt kept), 2 bad input, 130 interrupted (last.pt saved).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

# CLI dest -> TrainConfig field (flags keep the original code's names)
_DEST = {"block": "blocks", "tbsize": "batch_size", "checkpoint": "activation_checkpointing",
         "eval_bsize": "eval_batch_size", "iters": "steps", "test_limit": "eval_n_images"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train an SSP network (standard or adversarial training)",
        description="Train an SSP / ResNet model; writes a run folder with config.json, metrics.jsonl, train.log, "
                    "model_acc.pt / model_loss.pt (best on the validation split held out of the training images), "
                    "model_final.pt and last.pt. Unset options take the original code's per-dataset defaults, except on the "
                    "embedded mnist5k, which without --opt trains with Adam, lr 2e-3, batch 8 and a one-cycle "
                    "schedule (the original's SGD recipe learns little on 4,000 digits). "
                    "Multi-process: torchrun --nproc_per_node=K -m sspnet train ...")
    a = p.add_argument
    a("--dataset", help="mnist5k (default, bundled) | mnist | fmnist | cifar10 | tiny")
    a("--data-root", dest="data_root", help="data folder (default $SSPNET_DATA or ./data)")
    a("--model", help="scheme: res | ssp2 | ssp3 | ark | midrk2 | any registered scheme, or a scheme file "
                      "(default res)")
    a("--groups", help="one scheme per block group, comma separated (e.g. ark,res,ssp2 on cifar10; default: "
                       "--model in every group)")
    a("--block", type=int, help="blocks per group (default: the dataset's, 5 mnist / 6 cifar10)")
    a("--norm", help="b (BatchNorm) | g (GroupNorm) | l (GroupNorm(1)) | i (GroupNorm(C)) (default: the "
                     "dataset's, g on mnist5k/mnist/fmnist, b on cifar10/tiny)")
    a("--init", help="original | torch | kaiming (default: the dataset's, torch on mnist5k/mnist/fmnist, original "
                     "on cifar10/tiny)")
    a("--lr", type=float, help="learning rate (default: 2e-3 on mnist5k without --opt; else 0.1 for sgd, 1e-4 "
                               "adam on colour / 1e-3 on grey data, 1e-3 rms)")
    a("--decay", type=float, help="weight decay (default 5e-4 with sgd on cifar10/tiny, else 0)")
    a("--tbsize", type=int, help="global training batch size (default: 8 on mnist5k without --opt, else 128)")
    a("--epochs", type=int, help="epochs (default 200)")
    a("--opt", help="sgd | adam | rms (default: adam on mnist5k, sgd elsewhere; given --opt, mnist5k takes the "
                    "original's recipe too: batch 128, multistep, its lr)")
    a("--milestones", help="epochs where the lr is multiplied by 0.1, comma separated (default: the original's)")
    a("--schedule", help="multistep | cyclic (one triangular cycle, peak at 2/5) (default: cyclic on mnist5k "
                         "without --opt, else multistep)")
    a("--adv", help="none (default) | fgsm | pgd | ball | fast")
    a("--iters", type=int, help="PGD steps of the training adversary for --adv pgd (default 10 mnist, 7 cifar10/tiny)")
    a("--eps", type=float, help="training perturbation size: 1/255 units on cifar10/tiny (8 = 8/255), [0,1] on grey "
                                "data (default: 8/255 cifar10, 4/255 tiny, 0.3 mnist, 0.1 fmnist)")
    a("--alpha", type=float, help="PGD step size of --adv pgd, same unit as --eps (default: 2/255 cifar10, 1/255 "
                                  "tiny, 0.05 mnist, 0.02 fmnist)")
    a("--eps-warmup", dest="eps_warmup", type=float,
      help="epochs over which the training eps and alpha grow linearly to their full value (default 0: full eps "
           "from the first step)")
    a("--ball-copies", dest="ball_copies", type=int, help="noisy copies per image for --adv ball (default 5)")
    a("--save", help="run folder (default runs/DATASET-MODEL-ADV-seedSEED)")
    a("--seed", type=int, help="random seed (default 0)")
    a("--device", help="auto (default) | cpu | cuda | mps")
    a("--config", help="YAML or JSON file of options (keys as the flags); command-line flags override it "
                       "(default: none)")
    a("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt (default: a new run)")
    a("--force", action="store_true", default=None, help="overwrite an existing run folder")
    a("--quiet", action="store_true", default=None, help="no progress bar or per-epoch lines")
    a("--tensorboard", action="store_true", default=None, help="TensorBoard scalars + adversarial images (RUN/tb)")
    a("--craft-eval", dest="craft_eval", action="store_true", default=None,
      help="craft training adversarial examples in eval mode (default: train mode, as the original)")
    a("--clean-metrics", dest="clean_metrics", action="store_true", default=None,
      help="adversarial training: also log the clean loss/accuracy of each training batch (one extra forward "
           "per step: ~5%% of a PGD-7 step, ~15%% of a FastFGSM step)")
    a("--checkpoint", action="store_true", default=None, help="activation checkpointing (less memory, more compute)")
    a("--steps-per-epoch", dest="steps_per_epoch", type=int,
      help="cap on optimizer steps per epoch (default: none, every batch)")
    a("--init-from", dest="init_from", help="start from the weights of this checkpoint or run folder (default: "
                                            "fresh weights from --seed)")
    a("--test-limit", dest="test_limit", type=int,
      help="evaluate each epoch on N class-stratified test images only (default: all)")
    a("--eval-bsize", dest="eval_bsize", type=int, help="test batch size (default 500)")
    a("--save-every", dest="save_every", type=int, help="steps between mid-epoch last.pt saves (default 100; 0 off)")
    a("--log-interval", dest="log_interval", type=int, help="steps between progress-bar updates (default 20)")
    _selection_and_device_flags(a)
    from sspnet.cli._options import add_threads

    add_threads(p, "torch intra-op threads per process, an integer >= 1 (default: torch's default, usually the "
                   "number of cores; on a busy machine 1 can be faster); not part of the run's configuration")
    p.set_defaults(handler=run)


def _selection_and_device_flags(a) -> None:
    """Model selection, the training adversary's rounding, BatchNorm under DDP, AMP and memory layout."""
    a("--val-split", dest="val_split", type=float,
      help="fraction of the training images held out (class-stratified, fixed by --seed) as the validation split "
           "that selects model_acc.pt / model_loss.pt (default 0.1; 0: train on all, no validation split)")
    a("--select-on", dest="select_on",
      help="split that selects model_acc.pt / model_loss.pt: val (default with a validation split) | test (the "
           "original's; optimistic for test-set robustness) | none (only model_final.pt; default with --val-split 0)")
    a("--train-quantize", dest="train_quantize", action=argparse.BooleanOptionalAction, default=None,
      help="round fgsm / pgd / fast training adversarial examples to 8-bit levels after each step (default on, as "
           "the original)")
    a("--sync-bn", dest="sync_bn", action=argparse.BooleanOptionalAction, default=None,
      help="under torchrun, BatchNorm uses the statistics of the whole global batch, so K processes train the "
           "model one process would (default on; --no-sync-bn: per-rank statistics)")
    a("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (default: on CUDA)")
    a("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None,
      help="channels_last memory format (default: on CUDA, and on CPU for models without GroupNorm)")


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
    from sspnet.train.config import to_pixels

    spec = get_dataset_spec(dataset)
    for name in ("eps", "alpha"):
        v = options.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"--{name} must be a number, got {v!r}")
        options[name] = to_pixels(v, spec)
    return options


def config_from_args(args: argparse.Namespace):
    """The TrainConfig for parsed flags (defaults < --config file < flags; resume starts from config.json).

    eps / alpha of flags and of the config file are in the original's units and converted to pixel units here
    (those of a resumed config.json already are).
    """
    from sspnet.io.jsonio import read_mapping_file
    from sspnet.train import TrainConfig
    from sspnet.train.config import canonical_name, resume_options

    skip = {"command", "handler", "config", "resume", "threads"}
    base: dict[str, Any] = {}
    if args.resume:
        base = resume_options(args.resume)
        if args.save and Path(args.save) != Path(args.resume):
            raise ValueError(f"--resume {args.resume} and --save {args.save} name different folders; "
                             "pass only --resume")
    given: dict[str, Any] = {}
    if args.config:
        for key, value in read_mapping_file(args.config, what="config file").items():
            given[canonical_name(_DEST.get(key.replace("-", "_"), key))] = value
    given.update({_DEST.get(k, k): v for k, v in vars(args).items() if k not in skip and v is not None})
    base.update(_to_pixels(given, given.get("dataset", base.get("dataset", TrainConfig.dataset))))
    if args.resume:
        base.update(save=str(args.resume), resume=True)
    for key, kind, flag in (("groups", str, "--groups"), ("milestones", int, "--milestones")):
        if key in base:
            base[key] = _split(base[key], kind, flag)
    return TrainConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    from sspnet.train import NonFiniteLossError, train

    cfg = config_from_args(args)
    try:
        result = train(cfg)
    except NonFiniteLossError as exc:
        print(f"sspnet train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        run_dir = Path(cfg.resolved().save)
        if (run_dir / "last.pt").is_file():
            print(f"sspnet train: interrupted; {run_dir / 'last.pt'} holds the last saved state, continue with: "
                  f"sspnet train --resume {run_dir}", file=sys.stderr)
        else:  # before the first save: there is nothing to resume
            print(f"sspnet train: interrupted before the run saved any state; start it again with the same "
                  f"command{'' if cfg.force else ' and --force'}", file=sys.stderr)
        return 130
    if not cfg.quiet and int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one summary line, global rank 0's
        f = result.final
        if f:
            best = "" if result.best_acc is None else f" (best {result.selected_on} acc {result.best_acc:.2f}%)"
            print(f"{result.run_dir}: {result.epochs_completed} epochs, test acc {f['test_acc']:.2f}%, test loss "
                  f"{f['test_loss']:.4f}{best}")
        else:
            print(f"{result.run_dir}: nothing to do ({result.epochs_completed} epochs already done)")
    return 0
