"""The flag vocabulary of the `sspnet` command line: one name per concept across subcommands.

`VOCABULARY` holds every concept that more than one subcommand takes: its canonical flag, what it means (the
help text without the default) and its argparse settings, and per subcommand the names kept from before
(aliases: they parse to the same value; --help lists the canonical flag with "alias: --iters" after its text).
`add_flag(parser, command, concept, ...)` adds one of them; `add_option(parser, flags, ...)` a flag of one
command only. Both write the "(default ...)" of the help text from the value the command uses
(`default_text`), a config dataclass's field (`field_default`) or the dataset table (`per_dataset`), so no
default is written by hand twice. `Parser` turns a usage error into one line and exit code 2.

Also here: `--threads` (declared once, validated and applied once by `sspnet.cli.main`) and the checkpoint line
`attack` and `growth` print. A module whose name starts with "_" is no subcommand (`build_parser` skips it).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sspnet.io.runlayout import RunLayout

DEVICES = "auto | cpu | cuda | cuda:N | mps (auto: cuda, else mps, else cpu)"
CRITS = tuple(c for c in RunLayout.CRITS if c != "last")  # checkpoints of a run folder (`RunLayout`; last = final)


class UsageError(Exception):
    """A command line argparse refuses (unknown flag, bad value): `main` prints it as one line, exit code 2."""


class HelpFormatter(argparse.HelpFormatter):
    """--help lists an option under its canonical flag only; its aliases are named at the end of its text."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        aliases = getattr(action, "aliases", ())
        if aliases:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in aliases]
        return super()._format_action_invocation(action)


class TableFormatter(HelpFormatter):
    """`HelpFormatter` that prints a text with line breaks (an epilog table) as written; other texts wrap."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class Parser(argparse.ArgumentParser):
    """ArgumentParser with `HelpFormatter` whose errors raise `UsageError` (one line) instead of printing the
    usage and exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


@dataclass(frozen=True)
class Concept:
    """One concept of the vocabulary. flag: the canonical name; help: its meaning (no default); settings:
    argparse keywords (type, choices, action, nargs, metavar); aliases: subcommand -> the other names it
    accepts (the original's and earlier sspnet versions')."""

    flag: str
    help: str
    settings: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


_CLI_UNIT = "in the dataset's CLI unit (1/255 on cifar10/tiny, [0, 1] on grey data)"
VOCABULARY: dict[str, Concept] = {
    "blocks": Concept(
        "--blocks",
        "blocks per group",
        {"type": int, "metavar": "N"},
        {"train": ("--block",), "models": ("--block",), "attack": ("--block",)},
    ),
    "dataset": Concept(
        "--dataset", "dataset: mnist5k (embedded) | mnist | fmnist | cifar10 | tiny", {}, {"attack": ("--eval",)}
    ),
    "data_root": Concept(
        "--data-root",
        "folder with the dataset files (mnist5k needs none)",
        {"metavar": "DIR"},
        {"download": ("--root",)},
    ),
    "norm_layer": Concept(
        "--norm-layer",
        "normalisation layers: b (BatchNorm) | g (GroupNorm) | l (GroupNorm(1)) | i (GroupNorm(C))",
        {"metavar": "{b,g,l,i}"},
        {"train": ("--norm",), "models": ("--norm",), "attack": ("--model-norm",)},
    ),
    "norm": Concept("--norm", "threat model: linf | l2", {"choices": ("linf", "l2")}),
    "eps": Concept("--eps", f"attack radius, linf {_CLI_UNIT}, l2 in pixel units", {"type": float}),
    "alpha": Concept("--alpha", "PGD step size, in the unit of --eps", {"type": float}),
    "pgd_steps": Concept(
        "--pgd-steps", "PGD iterations", {"type": int, "metavar": "N"}, {"attack": ("--iters",), "growth": ("--steps",)}
    ),
    "restarts": Concept("--restarts", "PGD restarts; the per-image worst case counts", {"type": int, "metavar": "N"}),
    "random_start": Concept(
        "--random-start",
        "PGD from a random point of the eps-ball, not the image itself",
        {"action": argparse.BooleanOptionalAction},
    ),
    "quantize": Concept(
        "--quantize",
        "round the adversarial images to 8-bit levels after each step, as the original",
        {"action": argparse.BooleanOptionalAction},
    ),
    "train_eps": Concept(
        "--train-eps", f"radius of the training adversary, {_CLI_UNIT}", {"type": float}, {"train": ("--eps",)}
    ),
    "train_alpha": Concept(
        "--train-alpha",
        "PGD step of the training adversary, in the unit of --train-eps",
        {"type": float},
        {"train": ("--alpha",)},
    ),
    "train_pgd_steps": Concept(
        "--train-pgd-steps",
        "PGD iterations of the training adversary (--adv pgd)",
        {"type": int, "metavar": "N"},
        {"train": ("--iters",), "compare": ("--iters",)},
    ),
    "batch_size": Concept(
        "--batch-size",
        "training batch size (the global batch under torchrun)",
        {"type": int, "metavar": "N"},
        {"train": ("--tbsize",), "compare": ("--tbsize",)},
    ),
    "eval_batch_size": Concept(
        "--eval-batch-size",
        "test images per batch of the evaluation",
        {"type": int, "metavar": "N"},
        {"train": ("--eval-bsize",), "attack": ("--bsize",), "growth": ("--batch-size",)},
    ),
    "n_images": Concept(
        "--n-images",
        "class-stratified test images evaluated (sspnet.data.subsets)",
        {"type": int, "metavar": "N"},
        {"attack": ("--n-examples",), "growth": ("--n",), "compare": ("--n-eval",)},
    ),
    "eval_n_images": Concept(
        "--eval-n-images",
        "evaluate each epoch on N class-stratified test images only",
        {"type": int, "metavar": "N"},
        {"train": ("--test-limit",)},
    ),
    "out": Concept("--out", "output folder", {"metavar": "DIR"}, {"train": ("--save",)}),
    "crit": Concept(
        "--crit",
        "checkpoint of a run folder: final (model_final.pt, the end of training) | acc | loss "
        "(model_acc.pt / model_loss.pt: best on the run's selection split) | last (= final)",
        {"type": lambda v: "final" if v == "last" else v, "choices": CRITS},
    ),
    "device": Concept("--device", DEVICES),
    "threads": Concept("--threads", "torch intra-op threads, an integer >= 1", {"metavar": "N"}),
    "quiet": Concept("--quiet", "no progress display", {"action": "store_true"}),
    "seed": Concept("--seed", "random seed", {"type": int}),
}


def default_text(value: Any) -> str:
    """A default as --help shows it: on/off, 0.3 (not 0.30000000000000004), lists comma-separated."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{round(value, 10):g}"
    if isinstance(value, (list, tuple)):
        return ",".join(default_text(v) for v in value)
    return "none" if value is None else str(value)


def field_default(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (the one place that value is written); for a config with a
    `threat` field (a ThreatModel), also that threat model's fields (steps, restarts, quantize, ...)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            break
    names = {f.name for f in dataclasses.fields(cls)}
    if "threat" in names and name != "threat":  # a config holding a ThreatModel: its fields are the config's
        threat = field_default(cls, "threat")
        if hasattr(threat, name):
            return getattr(threat, name)
    raise AttributeError(f"{cls.__name__} has no field {name!r} with a default")


def grouped(pairs: list[tuple[str, Any]], sep: str = " ") -> str:
    """'g on mnist5k/mnist/fmnist, b on cifar10/tiny' from [(name, value)]: names sharing a value joined."""
    groups: dict[str, list[str]] = {}
    for name, value in pairs:
        groups.setdefault(default_text(value), []).append(name)
    return ", ".join(f"{value}{sep}{'/'.join(names)}" for value, names in groups.items())


def per_dataset(value_of: Callable[[Any], Any]) -> str:
    """ "the dataset's, 5 on mnist5k/mnist/fmnist, 6 on cifar10/tiny": value_of(DatasetSpec) for each dataset."""
    from sspnet.data.specs import DATASETS

    return "the dataset's, " + grouped([(name, value_of(spec)) for name, spec in DATASETS.items()], " on ")


def cli_units(pixels: Callable[[Any], float]) -> Callable[[Any], float]:
    """value_of for `per_dataset`: a spec's pixel-unit eps / alpha in its CLI unit (8/255 -> 8 on cifar10)."""
    return lambda spec: pixels(spec) / spec.eps_unit


def _help(text: str, default: Any, shown: str | None, aliases: tuple[str, ...]) -> str:
    """'TEXT (default 20); alias: --iters' (shown: the default in words, 'TEXT (default: the dataset's)')."""
    if text == argparse.SUPPRESS:
        return text
    out = f"{text} ({'default: ' + shown if shown is not None else 'default ' + default_text(default)})"
    if aliases:
        out += f"; alias{'es' if len(aliases) > 1 else ''}: {', '.join(aliases)}"
    return out


def add_option(
    parser: Any,
    flags: str | tuple[str, ...],
    help: str,
    *,
    default: Any = None,
    shown: str | None = None,
    aliases: tuple[str, ...] = (),
    **settings: Any,
) -> argparse.Action:
    """parser.add_argument(flags + aliases) with "(default ...)" generated: `shown` (words) or `default` (the
    value); the argparse default is `default` unless settings give another (e.g. None where a config file or
    a preset fills it in). Store-true flags say "(default off)"."""
    flags = (flags,) if isinstance(flags, str) else tuple(flags)
    argparse_default = settings.pop("argparse_default", default)
    action = parser.add_argument(
        *flags, *aliases, default=argparse_default, help=_help(help, default, shown, aliases), **settings
    )
    action.aliases = tuple(aliases)
    return action


def add_flag(parser: Any, command: str, concept: str, *, note: str = "", **kwargs: Any) -> argparse.Action:
    """Add the vocabulary's `concept` to `command`'s parser: its canonical flag, the command's aliases, its
    settings (kwargs may add or replace them: dest, type, choices) and help (+ `note`, command specific)."""
    c = VOCABULARY[concept]
    help_text = c.help + (f"; {note}" if note else "")
    return add_option(parser, c.flag, help_text, aliases=c.aliases.get(command, ()), **{**c.settings, **kwargs})


def add_threads(
    parser: Any,
    command: str,
    meaning: str = "of this command",
    shown: str = "torch's default, usually the number of cores; on a busy machine 1 can be faster",
) -> argparse.Action:
    """`--threads N`, a string here: `sspnet.cli.main` validates it (`apply_threads`), one error line and exit 2."""
    return add_flag(parser, command, "threads", note=meaning, shown=shown)


def parse_threads(value: Any) -> int | None:
    """The --threads value as an int >= 1 (None: not given); ValueError in one line otherwise."""
    if value is None:
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1 or str(value).strip() != str(n):
        raise ValueError(f"--threads must be an integer >= 1, got {value!r}")
    return n


def apply_threads(args: argparse.Namespace) -> int | None:
    """The one place the CLI validates and applies --threads: args.threads becomes the int (or None) and
    torch.set_num_threads(it) holds for the whole command."""
    n = parse_threads(getattr(args, "threads", None))
    if hasattr(args, "threads"):
        args.threads = n
    if n is not None:
        import torch

        torch.set_num_threads(n)
    return n


def print_checkpoint(desc: dict | None) -> None:
    """The checkpoint a command used and how it was selected (`describe_checkpoint`), with its note and warning."""
    from sspnet.experiments.attack_files import checkpoint_lines

    for line in checkpoint_lines(desc):
        print(line)
