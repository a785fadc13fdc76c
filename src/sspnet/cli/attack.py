"""`sspnet attack RUN_DIR_OR_CHECKPOINT`: flags -> `AttackRunConfig` -> `sspnet.experiments.attack.run_attack`
-> exit code. Robustness of a trained model (FGSM, PGD, noise ball, AutoAttack, Square), optionally with the
gradient-masking audit (`--audit`, `--transfer-from RUN`).

eps/alpha are in the original's units for linf (CIFAR-10/TinyImageNet in 1/255, MNIST/Fashion-MNIST in [0, 1]);
l2 radii are always in [0, 1] pixel units. Writes next to the checkpoint (or into --out):
attack_<name>_<eps>.json, .png (natural vs adversarial grid), .safetensors (adversarial images); for several
eps also attack_<name>_sweep.json/.png/.md/.csv; with --audit attack_audit_<eps>.json.
"""

from __future__ import annotations

import argparse
from typing import Any

from sspnet.cli._options import (
    add_flag,
    add_option,
    add_threads,
    field_default,
    grouped,
)
from sspnet.experiments.attack import L2_DEFAULT_EPS, AttackRunConfig, run_attack

# flags of attack only: flag -> (help, the default in words (None: AttackRunConfig's field), argparse settings)
_OWN: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "--attack": ("{names} | all, or a comma list (all = {all})", None, {}),  # names: the attack registry's
    "--copies": ("noise-ball copies", None, {"type": int}),
    "--early-stop": (
        (
            "stop attacking an image once it is misclassified and never attack images misclassified clean; "
            "an image counts as broken if any PGD iterate fooled the model, as AutoAttack counts "
            "(--no-early-stop: every attack in full on every image)"
        ),
        None,
        {"action": argparse.BooleanOptionalAction},
    ),
    "--queries": ("Square: model calls per image", None, {"type": int}),
    "--audit": (
        (
            "gradient-masking audit on the same images at the one --eps: PGD with --pgd-steps and 4x as many "
            "steps, Square, AutoAttack, PGD at a large eps, input gradients (and --transfer-from)"
        ),
        None,
        {"action": "store_true"},
    ),
    "--transfer-from": (
        "audit with transfer attacks: PGD crafted on this run's model (implies --audit)",
        None,
        {"metavar": "RUN"},
    ),
    "--audit-autoattack": ("run AutoAttack standard in the audit", None, {"action": argparse.BooleanOptionalAction}),
    "--model": ("scheme of an original checkpoint: res, ssp2, ssp3, ark, midrk2", "the checkpoint's", {}),
    "--archi": ("original architecture name: mnist | cifar10 | imagenet", "inferred from the checkpoint's tensors", {}),
    "--grid": ("images in the PNG grid", None, {"type": int}),
}
# shared concept -> the default in words where the field's value is not the whole story (None: the field's)
_SHARED = {
    "crit": None,
    "norm": None,
    "eps": None,
    "alpha": "the training alpha scaled with eps, i.e. alpha/eps of training",
    "pgd_steps": None,
    "restarts": None,
    "random_start": None,
    "eval_batch_size": None,
    "n_images": "all",
    "device": None,
    "blocks": "the checkpoint's, else inferred from its tensors",
    "dataset": "the model's",
    "norm_layer": "the checkpoint's, else b with BatchNorm statistics, g without",
    "data_root": "the run's recorded --data-root, else $SSPNET_DATA or ./data",
    "quantize": None,
    "seed": None,
    "out": "the run folder / the checkpoint's folder",
    "quiet": None,
}
FIELD = {"pgd_steps": "steps", "eval_batch_size": "batch_size", "eps": "eps_cli", "alpha": "alpha_cli"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attack",
        help="adversarial robustness of a trained model (fgsm, pgd, noise ball, autoattack)",
        description="Clean and adversarial accuracy/loss, per-sample worst case across attacks, perturbation sizes, "
        "sanity flags. linf eps/alpha in the dataset's CLI unit (1/255 for cifar10/tiny, [0, 1] for "
        "mnist/fmnist; default: the training eps/alpha); l2 eps/alpha in [0, 1] pixel units.",
    )
    p.add_argument("path", nargs="?", metavar="RUN_DIR_OR_CHECKPOINT", help="run folder or checkpoint file")
    p.add_argument("--load", default=None, help="same as the positional path (the original's flag)")
    from sspnet.data.specs import DATASETS

    linf = grouped([(name, s.train_eps / s.eps_unit) for name, s in DATASETS.items()], " on ")
    eps_words = f"linf the dataset's training eps, {linf}; l2 {grouped(list(L2_DEFAULT_EPS.items()), ' on ')}"
    words = {**_SHARED, "eps": eps_words}
    for concept, shown in words.items():
        field = FIELD.get(concept, concept)
        extra = {"nargs": "+", "note": "one value, or several for a sweep"} if concept == "eps" else {}
        add_flag(
            p, "attack", concept, default=None if shown else field_default(AttackRunConfig, field), shown=shown, **extra
        )
    from sspnet.attacks import attack_names
    from sspnet.eval.config import ALL_ATTACKS

    for flag, (help, shown, settings) in _OWN.items():
        help = help.format(names=" | ".join(attack_names(evaluates=True)), all=",".join(ALL_ATTACKS))
        add_option(
            p,
            flag,
            help,
            default=None if shown else field_default(AttackRunConfig, flag[2:].replace("-", "_")),
            shown=shown,
            **settings,
        )
    add_threads(p, "attack")
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> AttackRunConfig:
    """The AttackRunConfig of parsed flags (eps / alpha stay in the CLI unit; `run_attack` converts them)."""
    if (args.path is None) == (args.load is None):
        raise ValueError("give the run folder or checkpoint once: `sspnet attack RUN_DIR` (or --load FILE)")
    return AttackRunConfig(
        path=args.path or args.load,
        crit=args.crit,
        attack=args.attack,
        norm=args.norm,
        eps_cli=None if args.eps is None else tuple(args.eps),
        alpha_cli=args.alpha,
        steps=args.pgd_steps,
        restarts=args.restarts,
        copies=args.copies,
        random_start=args.random_start,
        early_stop=args.early_stop,
        queries=args.queries,
        audit=args.audit,
        transfer_from=args.transfer_from,
        audit_autoattack=args.audit_autoattack,
        batch_size=args.eval_batch_size,
        n_images=args.n_images,
        device=args.device,
        dataset=args.dataset,
        model=args.model,
        blocks=args.blocks,
        norm_layer=args.norm_layer,
        archi=args.archi,
        data_root=args.data_root,
        quantize=args.quantize,
        seed=args.seed,
        grid=args.grid,
        out=args.out,
        quiet=args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    run_attack(config_from_args(args), echo=print)
    return 0
