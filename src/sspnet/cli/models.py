"""`sspnet models`: the registered models with their scheme facts, F calls and parameter counts."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models (schemes) with order, SSP coefficient, cost")
    p.add_argument("--dataset", default="mnist5k", help="architecture to count parameters for (default mnist5k)")
    p.add_argument("--block", type=int, default=None, help="blocks per group (default: the dataset's)")
    p.add_argument("--norm", default=None, help="b | g | l | i (default: the dataset's)")
    p.add_argument("--scheme-file", action="append", default=[], help="also show a JSON/YAML scheme file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sspnet.nn.models import create_model, list_models, model_cost
    from sspnet.nn.schemes import PRESETS, load_scheme_file
    from sspnet.data.specs import get_dataset_spec

    get_dataset_spec(args.dataset)
    names: list = list_models() + [load_scheme_file(f) for f in args.scheme_file]
    print(f"{'model':<14} {'stages':>6} {'order':>5} {'SSP C':>6} {'F/block':>7} {'params':>10}  description")
    for name in names:
        model = create_model(name, dataset=args.dataset, blocks=args.block, norm=args.norm)
        cost = model_cost(model)
        scheme = PRESETS.get(name) if isinstance(name, str) else name
        label = name if isinstance(name, str) else name.name
        if scheme is None:  # ark
            row = (label, 2, 2, "-", "2", "adaptive 2-stage RK, learned c2 = sigmoid(b10)")
        else:
            c = "-" if scheme.ssp_coefficient is None else f"{scheme.ssp_coefficient:g}"
            row = (label, scheme.stages, scheme.order, c, str(scheme.f_calls), scheme.description)
        print(f"{row[0]:<14} {row[1]:>6} {row[2]:>5} {row[3]:>6} {row[4]:>7} {cost['parameters']:>10,}  {row[5]}")
    return 0
