"""`sspnet models`: the registered models with their scheme facts, F calls and parameter counts."""

from __future__ import annotations

import argparse

from sspnet.cli._options import add_flag, add_option, add_threads, per_dataset
from sspnet.nn.architectures import get_architecture


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list registered models (schemes) with order, SSP coefficient, cost",
        description="List every registered model: its block scheme's stages, order and SSP coefficient (computed "
        "from the coefficients), F calls per block and the parameter count on --dataset's "
        "architecture. Scheme files (YAML/JSON, a Shu-Osher pair or a Butcher tableau) are validated and "
        "listed with --scheme-file; register them in Python with sspnet.register_scheme.",
    )
    add_flag(p, "models", "dataset", default="mnist5k", note="the architecture to count parameters for")
    add_flag(p, "models", "blocks", shown=per_dataset(lambda spec: get_architecture(spec.arch).blocks))
    add_flag(p, "models", "norm_layer", shown=per_dataset(lambda spec: get_architecture(spec.arch).norm))
    add_option(
        p,
        "--scheme-file",
        "also show a JSON/YAML scheme file (repeatable)",
        action="append",
        default=[],
        metavar="FILE",
        shown="none",
    )
    add_threads(p, "models")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sspnet.data.specs import get_dataset_spec
    from sspnet.nn.models import create_model, list_models, model_cost
    from sspnet.nn.registry import get_block, get_model_entry
    from sspnet.nn.schemes import load_scheme_file

    arch = get_dataset_spec(args.dataset).arch
    names: list = list_models() + [load_scheme_file(f) for f in args.scheme_file]
    print(
        f"{'model':<14} {'display':<12} {'stages':>6} {'order':>5} {'SSP C':>6} {'F/block':>7} {'params':>10}  "
        "description"
    )
    for name in names:
        cost = model_cost(create_model(name, dataset=args.dataset, blocks=args.blocks, norm=args.norm_layer))
        entry = get_model_entry(name)
        if entry.groups:  # a composite model: one block kind per group
            kinds = entry.blocks_per_group(arch, len(entry.groups[arch]))
            row = (
                entry.name,
                "-",
                "-",
                "-",
                ",".join(str(get_block(k).f_calls) for k in kinds),
                f"{entry.description} ({', '.join(kinds)} on {arch})",
            )
        else:
            b = get_block(name)
            c = "-" if b.ssp_coefficient is None else f"{b.ssp_coefficient:g}"
            row = (b.name, b.stages, b.order, c, str(b.f_calls), b.description)
        print(
            f"{row[0]:<14} {entry.display:<12} {row[1]:>6} {row[2]:>5} {row[3]:>6} {row[4]:>7} "
            f"{cost['parameters']:>10,}  {row[5]}"
        )
    return 0
