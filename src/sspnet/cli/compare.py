"""`sspnet compare`: train several models (default res and ssp2, adversarially) under one budget for several
seeds, evaluate clean / FGSM / PGD accuracy, perturbation growth and a gradient-masking audit, test the
differences and write OUT/REPORT.md (see `sspnet.experiments.compare`).

eps / alpha are typed in the dataset's CLI unit (1/255 on cifar10 / tiny, [0, 1] on grey data) and converted
to pixel units here, at the edge: everything below works in pixel units."""
from __future__ import annotations

import argparse

from sspnet.experiments.compare import CompareConfig, run_compare
from sspnet.experiments.compare.config import AUDIT_MODES, AUTOATTACK_MODES, PRESETS


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(t.strip()) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}s, got {text!r}")
    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    presets = "measured on this machine by --dry-run; " + "; ".join(f"{k}: {v['about']}" for k, v in PRESETS.items())
    p = subparsers.add_parser(
        "compare", help="the comparison experiment: several schemes x seeds, robustness and growth, REPORT.md",
        description="Train every model for every seed under one budget (runs cached by a hash of their config: a "
                    "re-run reuses finished runs and resumes unfinished ones), evaluate clean/FGSM/PGD accuracy, "
                    "an eps sweep, the perturbation growth ratios and a gradient-masking audit, test every model "
                    "against res (seed-level t-test, per-image McNemar, Holm, minimum detectable differences) and "
                    "write OUT/REPORT.md (Findings first), OUT/results.json (per-image results) and plots. "
                    f"Expected times: {presets}.")
    a = p.add_argument
    a("--preset", default="default", choices=list(PRESETS), help="budget and threat model (default: default)")
    a("--models", type=_csv(str), default=None,
      help="comma-separated models or scheme files; the first is the baseline (default: res,ssp2; paper presets "
           "res,ssp2,ssp3,ark,midrk2)")
    a("--seeds", type=int, default=None, help="number of seeds 0..S-1 (default 3; cpu-hour 6)")
    a("--dataset", default=None, help="dataset (default: the preset's, mnist5k for the default)")
    a("--data-root", default=None, help="folder with the dataset files (default $SSPNET_DATA or ./data; mnist5k "
      "needs none)")
    a("--out", default="compare", help="output folder (default ./compare)")
    a("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto: cuda, else mps, else cpu)")
    a("--jobs", type=int, default=None, help="runs in parallel processes, --threads threads each (default: 2 on a "
      "CPU with >= 2 cores, 1 on a GPU)")
    from sspnet.cli._options import add_threads

    add_threads(p, "torch intra-op threads of each run, an integer >= 1 (default 1, on a CPU with --jobs 1 too, so "
                   "that the numbers do not depend on --jobs; another value is part of the runs' cache hashes)")
    a("--dry-run", action="store_true", help="print the plan (and what is cached) without training")
    a("--quiet", action="store_true", help="no progress lines")
    t = p.add_argument_group("training (override the preset; eps/alpha in the dataset's CLI unit: 1/255 for "
                             "cifar10/tiny, [0,1] for mnist)")
    t.add_argument("--blocks", type=int, default=None, help="blocks per group (default: the preset's, 2 default / "
                   "cpu-hour, 5 paper-mnist)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's, 8 default / cpu-hour, "
                   "200 paper presets)")
    t.add_argument("--tbsize", dest="batch_size", type=int, default=None,
                   help="training batch size (default: the preset's, 64 default / cpu-hour, 128 paper presets)")
    t.add_argument("--steps-per-epoch", type=int, default=None,
                   help="cap on optimizer steps per epoch (default: none, every batch)")
    t.add_argument("--opt", default=None, help="sgd | adam | rms (default: the preset's, adam default / cpu-hour, "
                   "sgd paper presets)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's, 3e-3 default / "
                   "cpu-hour, 0.1 paper presets)")
    t.add_argument("--schedule", default=None, help="multistep | cyclic (default: the preset's, cyclic default / "
                   "cpu-hour, multistep paper presets)")
    t.add_argument("--adv", default=None, help="training adversary: none | fgsm | pgd | ball | fast (default: the "
                   "preset's, pgd default / cpu-hour / paper-cifar10, ball paper-mnist)")
    t.add_argument("--iters", type=int, default=None, help="PGD iterations of adversarial training (default: the "
                   "preset's, 3 default / cpu-hour, K of each --grid variant in paper-cifar10)")
    t.add_argument("--train-eps", type=float, default=None, help="training eps, CLI unit (default: the preset's, "
                   "0.2 default / cpu-hour, else the dataset's: 0.3 mnist, 8 cifar10)")
    t.add_argument("--train-alpha", type=float, default=None, help="training PGD step, CLI unit (default: the "
                   "preset's, 2.5 x train eps / 3 default / cpu-hour, else the dataset's: 0.05 mnist, 2 cifar10)")
    t.add_argument("--grid", type=_csv(str), default=None,
                   help="variants N:K (blocks:PGD iterations), e.g. 6:7,10:12 (default: none; paper-cifar10 "
                        "6:7,6:12,10:7,10:12)")
    _eval_arguments(p)
    p.set_defaults(handler=run)


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    e = p.add_argument_group("evaluation (eps in the dataset's CLI unit: 1/255 for cifar10/tiny, [0,1] for mnist)")
    e.add_argument("--eps", type=float, default=None, help="attack eps (default 0.2 on mnist5k; with --dataset: "
                   "mnist 0.1, cifar10 2; paper presets: the paper's)")
    e.add_argument("--alpha", type=float, default=None, help="PGD step (default eps/4)")
    e.add_argument("--pgd-steps", dest="steps", type=int, default=None,
                   help="PGD iterations (default 10; paper presets 20)")
    e.add_argument("--restarts", type=int, default=None,
                   help="PGD restarts, each from a random start when > 1; the per-image worst case counts "
                        "(default 2; cpu-hour 3; paper presets 1)")
    e.add_argument("--n-images", "--n-eval", dest="n_images", type=int, default=None,
                   help="test images of clean / FGSM / PGD (default: all)")
    e.add_argument("--sweep", type=_csv(float), default=None, help="eps values of the accuracy-vs-eps sweep "
                   "(default: 0.5, 1, 1.5 and 2 x --eps; paper presets the paper's)")
    e.add_argument("--sweep-images", "--sweep-n", dest="sweep_images", type=int, default=None,
                   help="test images of the sweep (default 300)")
    e.add_argument("--growth-images", "--growth-n", dest="growth_images", type=int, default=None,
                   help="test images for growth ratios (default 300)")
    e.add_argument("--autoattack-images", type=int, default=None,
                   help="test images of AutoAttack when the audit is off (default 100; with the audit on, "
                        "AutoAttack runs once, inside it, on --audit-images)")
    e.add_argument("--autoattack", default=None, choices=AUTOATTACK_MODES,
                   help="AutoAttack standard: on, off, auto (when installed) (default off: about 5 min per run "
                        "of 100 images on one CPU core; cpu-hour and paper presets on)")
    e.add_argument("--audit", default=None, choices=AUDIT_MODES,
                   help="gradient-masking audit of every run (sspnet.eval.audit: transfer PGD from the res run "
                        "of the same seed, Square black box, long PGD, large eps, AutoAttack as --autoattack; "
                        "default on)")
    e.add_argument("--audit-images", type=int, default=None, help="test images of the audit (default 100)")
    e.add_argument("--early-stop", action=argparse.BooleanOptionalAction, default=None,
                   help="sweep, AutoAttack and audit attacks stop per image at its first misclassified iterate and "
                        "skip clean-misclassified images (default on; --no-early-stop runs every step)")
    e.add_argument("--audit-queries", type=int, default=None,
                   help="model calls per image of the audit's Square attack (default 1000; paper presets 5000)")


def _parse_grid(items: list[str] | None) -> list[tuple[int, int]] | None:
    if items is None:
        return None
    grid = []
    for item in items:
        parts = item.split(":")
        if len(parts) != 2 or not all(x.strip().isdigit() for x in parts):
            raise ValueError(f"--grid takes N:K pairs (blocks:iterations) like 6:7,10:12; got {item!r}")
        grid.append((int(parts[0]), int(parts[1])))
    return grid


def build_config(args: argparse.Namespace) -> CompareConfig:
    """The CompareConfig of the parsed arguments, eps / alpha converted from the CLI unit to pixel units."""
    from sspnet.cli._options import parse_threads
    from sspnet.data.specs import get_dataset_spec

    unit = get_dataset_spec(args.dataset or PRESETS[args.preset]["dataset"]).eps_unit

    def pixels(v: float | None) -> float | None:
        return None if v is None else v * unit

    train = {"blocks": args.blocks, "epochs": args.epochs, "batch_size": args.batch_size,
             "steps_per_epoch": args.steps_per_epoch, "opt": args.opt, "lr": args.lr, "schedule": args.schedule,
             "adv": args.adv, "steps": args.iters, "eps": pixels(args.train_eps),
             "alpha": pixels(args.train_alpha)}
    ev = {"eps": pixels(args.eps), "alpha": pixels(args.alpha), "steps": args.steps, "restarts": args.restarts,
          "n_images": args.n_images,
          "sweep": None if args.sweep is None else tuple(v * unit for v in args.sweep),
          "sweep_images": args.sweep_images, "growth_images": args.growth_images,
          "autoattack_images": args.autoattack_images, "autoattack": args.autoattack, "audit": args.audit,
          "audit_images": args.audit_images, "audit_queries": args.audit_queries, "early_stop": args.early_stop}
    return CompareConfig(preset=args.preset, dataset=args.dataset, models=args.models, seeds=args.seeds,
                         out=args.out, train=train, eval=ev, grid=_parse_grid(args.grid), data_root=args.data_root,
                         device=args.device, jobs=args.jobs, dry_run=args.dry_run, quiet=args.quiet,
                         threads=parse_threads(getattr(args, "threads", None)))


def run(args: argparse.Namespace) -> int:
    run_compare(build_config(args))
    return 0
