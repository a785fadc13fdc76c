"""`sspnet compare`: train several models (default res and ssp2, adversarially) under one budget for several
seeds, evaluate clean / FGSM / PGD accuracy, perturbation growth and a gradient-masking audit, test the
differences and write OUT/REPORT.md (see `sspnet.experiments.compare`).

eps / alpha are typed in the dataset's CLI unit (1/255 on cifar10 / tiny, [0, 1] on grey data) and converted
to pixel units here, at the edge: everything below works in pixel units."""
from __future__ import annotations

import argparse

from sspnet.experiments.compare import CompareConfig, run_compare
from sspnet.experiments.compare.config import (AUDIT_MODES, AUTOATTACK_MODES, EXECUTORS, PRESETS, SUBMITIT_CLUSTERS,
                                               ClusterSettings)


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
    t.add_argument("--eps-warmup", type=float, default=None,
                   help="epochs over which the training eps and step grow linearly to their full value (default: "
                        "the preset's, a quarter of the epochs in default / cpu-hour (2 of 8), else 0)")
    t.add_argument("--grid", type=_csv(str), default=None,
                   help="variants N:K (blocks:PGD iterations), e.g. 6:7,10:12 (default: none; paper-cifar10 "
                        "6:7,6:12,10:7,10:12)")
    _eval_arguments(p)
    _cluster_arguments(p)
    p.set_defaults(handler=run)


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("where the runs run (docs/cluster.md; OUT must be on a file system the workers share)")
    c.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: this machine, --jobs processes; submitit: one Slurm job per run to do, as a job "
                        "array (pip install 'sspnet[slurm]'); ray: one Ray task per run on the cluster of "
                        "$RAY_ADDRESS, else a local Ray (pip install 'sspnet[ray]') (default local)")
    c.add_argument("--gpus-per-run", type=int, default=0, help="GPUs of each job (default 0)")
    c.add_argument("--cpus-per-run", type=int, default=None, help="CPU cores of each job (default: --threads, 1)")
    c.add_argument("--timeout-min", type=int, default=240, help="time limit of each Slurm job in minutes; a run "
                   "cut off resumes from its last.pt at the next invocation (default 240)")
    c.add_argument("--array-parallelism", type=int, default=None,
                   help="Slurm jobs of the array running at once (default: submitit's, 256)")
    c.add_argument("--partition", "--slurm-partition", dest="partition", default=None,
                   help="Slurm partition (default: the cluster's)")
    c.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an sbatch option for every job, e.g. account=proj, mem=16G, constraint=a100; repeatable "
                        "(default: none)")
    c.add_argument("--submitit-cluster", default="auto", choices=SUBMITIT_CLUSTERS,
                   help="auto: Slurm when sbatch is found, else local processes; local: processes on this machine "
                        "(for tests); debug: in this process; slurm (default auto)")
    c.add_argument("--emit-jobs", metavar="FILE", default=None,
                   help="write one shell command per run to do into FILE (run them in any order: GNU parallel, "
                        "a Slurm array, a job list) and exit without running anything (default: run the plan here)")
    c.add_argument("--report-only", action="store_true",
                   help="write REPORT.md / results.json from the finished runs, listing the missing ones; run "
                        "nothing")
    c.add_argument("--only-run", metavar="RUN", default=None,
                   help="do one run of the plan (its folder name under OUT/runs): train / resume, evaluate, audit; "
                        "no report (default: every run)")
    c.add_argument("--job-spec", default=None, help=argparse.SUPPRESS)  # the plan's options, from --emit-jobs


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


def _slurm_options(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--slurm-option takes KEY=VALUE (an sbatch option), got {item!r}")
        out[key.strip().lstrip("-")] = value.strip()
    return out


def _cluster(args: argparse.Namespace) -> ClusterSettings:
    return ClusterSettings(gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                           timeout_min=args.timeout_min, array_parallelism=args.array_parallelism,
                           partition=args.partition, slurm_options=_slurm_options(args.slurm_option),
                           submitit_cluster=args.submitit_cluster)


def build_config(args: argparse.Namespace) -> CompareConfig:
    """The CompareConfig of the parsed arguments, eps / alpha converted from the CLI unit to pixel units (with
    --job-spec: the plan's options it holds, and --only-run)."""
    from sspnet.cli._options import parse_threads
    from sspnet.data.specs import get_dataset_spec

    if args.job_spec is not None:
        from sspnet.experiments.compare.jobs import from_spec

        if not args.only_run:
            raise ValueError("--job-spec needs --only-run RUN")
        config = from_spec(args.job_spec)
        config.only_run = args.only_run
        return config
    unit = get_dataset_spec(args.dataset or PRESETS[args.preset]["dataset"]).eps_unit

    def pixels(v: float | None) -> float | None:
        return None if v is None else v * unit

    train = {"blocks": args.blocks, "epochs": args.epochs, "batch_size": args.batch_size,
             "steps_per_epoch": args.steps_per_epoch, "opt": args.opt, "lr": args.lr, "schedule": args.schedule,
             "adv": args.adv, "steps": args.iters, "eps": pixels(args.train_eps),
             "alpha": pixels(args.train_alpha), "eps_warmup": args.eps_warmup}
    ev = {"eps": pixels(args.eps), "alpha": pixels(args.alpha), "steps": args.steps, "restarts": args.restarts,
          "n_images": args.n_images,
          "sweep": None if args.sweep is None else tuple(v * unit for v in args.sweep),
          "sweep_images": args.sweep_images, "growth_images": args.growth_images,
          "autoattack_images": args.autoattack_images, "autoattack": args.autoattack, "audit": args.audit,
          "audit_images": args.audit_images, "audit_queries": args.audit_queries, "early_stop": args.early_stop}
    return CompareConfig(preset=args.preset, dataset=args.dataset, models=args.models, seeds=args.seeds,
                         out=args.out, train=train, eval=ev, grid=_parse_grid(args.grid), data_root=args.data_root,
                         device=args.device, jobs=args.jobs, dry_run=args.dry_run, quiet=args.quiet,
                         threads=parse_threads(getattr(args, "threads", None)), executor=args.executor,
                         cluster=_cluster(args), emit_jobs=args.emit_jobs, report_only=args.report_only,
                         only_run=args.only_run)


def run(args: argparse.Namespace) -> int:
    """0; 1 when a job of --executor submitit / ray failed (the report lists its run as missing)."""
    summary = run_compare(build_config(args))
    return 1 if summary.get("failed") else 0
