"""`sspnet compare`: train res, ssp2, ssp3, ark and midrk2 under one budget for several seeds, evaluate
clean / FGSM / PGD accuracy and perturbation growth, and write OUT/REPORT.md (see `sspnet.compare`)."""
from __future__ import annotations

import argparse

from sspnet.experiments.compare.runner import AUTOATTACK_MODES, PRESETS, CompareConfig, run_compare


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(t.strip()) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}s, got {text!r}")
    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    presets = "; ".join(f"{k}: {v['expected']}" for k, v in PRESETS.items())
    p = subparsers.add_parser(
        "compare", help="the comparison experiment: several schemes x seeds, robustness and growth, REPORT.md",
        description="Train every model for every seed under one budget (runs cached by a hash of their config: a "
                    "re-run reuses finished runs and resumes unfinished ones), evaluate clean/FGSM/PGD accuracy, "
                    "an eps sweep and the perturbation growth ratios, and write OUT/REPORT.md, OUT/results.json and "
                    f"plots. Expected times: {presets}.")
    a = p.add_argument
    a("--preset", default="default", choices=list(PRESETS), help="budget and threat model (default: default)")
    a("--models", type=_csv(str), default=None, help="comma-separated schemes (default res,ssp2,ssp3,ark,midrk2)")
    a("--seeds", type=int, default=None, help="number of seeds 0..S-1 (default 3)")
    a("--dataset", default=None, help="dataset (default: the preset's, mnist5k for the default)")
    a("--data-root", default=None, help="folder with the dataset files (mnist5k needs none)")
    a("--out", default="compare", help="output folder (default ./compare)")
    a("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    a("--jobs", type=int, default=None, help="runs in parallel processes, one thread each (default: 2 on a CPU "
      "with >= 2 cores, 1 on a GPU)")
    a("--dry-run", action="store_true", help="print the plan (and what is cached) without training")
    a("--quiet", action="store_true", help="no progress lines")
    t = p.add_argument_group("training (override the preset; eps/alpha in the dataset's CLI unit)")
    t.add_argument("--blocks", type=int, default=None, help="blocks per group")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--tbsize", dest="batch_size", type=int, default=None, help="training batch size")
    t.add_argument("--steps-per-epoch", type=int, default=None, help="cap on optimizer steps per epoch")
    t.add_argument("--opt", default=None, help="sgd | adam | rms")
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--schedule", default=None, help="multistep | cyclic")
    t.add_argument("--adv", default=None, help="training adversary: none | fgsm | pgd | ball | fast")
    t.add_argument("--iters", type=int, default=None, help="PGD iterations of adversarial training")
    t.add_argument("--train-eps", type=float, default=None, help="training eps (CLI unit)")
    t.add_argument("--train-alpha", type=float, default=None, help="training PGD step (CLI unit)")
    t.add_argument("--grid", type=_csv(str), default=None,
                   help="variants N:K (blocks:PGD iterations), e.g. 6:7,10:12 (paper-cifar10: 6:7,6:12,10:7,10:12)")
    e = p.add_argument_group("evaluation (eps in the dataset's CLI unit: 1/255 for cifar10/tiny, [0,1] for mnist)")
    e.add_argument("--eps", type=float, default=None, help="attack eps (default mnist 0.1, cifar10 2; presets: "
                   "the paper's)")
    e.add_argument("--alpha", type=float, default=None, help="PGD step (default eps/4)")
    e.add_argument("--pgd-steps", type=int, default=None, help="PGD iterations (default 10; paper presets 20)")
    e.add_argument("--n-eval", type=int, default=None, help="test images (default 500; paper presets all)")
    e.add_argument("--sweep", type=_csv(float), default=None, help="eps values of the accuracy-vs-eps sweep")
    e.add_argument("--sweep-n", type=int, default=None, help="test images of the sweep (default 200)")
    e.add_argument("--growth-n", type=int, default=None, help="test images for growth ratios (default 200)")
    e.add_argument("--autoattack", default=None, choices=AUTOATTACK_MODES,
                   help="auto: when installed (paper presets), on, off (default preset: off, it takes minutes "
                        "per run on a CPU)")
    p.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> CompareConfig:
    from sspnet.data.specs import get_dataset_spec

    preset = PRESETS[args.preset]
    unit = get_dataset_spec(args.dataset or preset["dataset"]).eps_unit
    grid = None
    if args.grid is not None:
        grid = []
        for item in args.grid:
            parts = item.split(":")
            if len(parts) != 2 or not all(x.strip().isdigit() for x in parts):
                raise ValueError(f"--grid takes N:K pairs (blocks:iterations) like 6:7,10:12; got {item!r}")
            grid.append((int(parts[0]), int(parts[1])))
    train = {"blocks": args.blocks, "epochs": args.epochs, "batch_size": args.batch_size,
             "steps_per_epoch": args.steps_per_epoch, "opt": args.opt, "lr": args.lr, "schedule": args.schedule,
             "adv": args.adv, "iters": args.iters, "eps": args.train_eps, "alpha": args.train_alpha}
    scale = (lambda v: None if v is None else v * unit)
    ev = {"eps": scale(args.eps), "alpha": scale(args.alpha), "pgd_steps": args.pgd_steps, "n": args.n_eval,
          "sweep": None if args.sweep is None else tuple(v * unit for v in args.sweep), "sweep_n": args.sweep_n,
          "growth_n": args.growth_n, "autoattack": args.autoattack}
    return CompareConfig(preset=args.preset, dataset=args.dataset, models=args.models, seeds=args.seeds,
                         out=args.out, train=train, eval=ev, grid=grid, data_root=args.data_root,
                         device=args.device, jobs=args.jobs, dry_run=args.dry_run, quiet=args.quiet)


def run(args: argparse.Namespace) -> int:
    run_compare(build_config(args))
    return 0
