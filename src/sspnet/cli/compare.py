"""`sspnet compare`: train several models (default res and ssp2, adversarially) under one budget for several
seeds, evaluate clean / FGSM / PGD accuracy, perturbation growth and a gradient-masking audit, test the
differences and write OUT/REPORT.md (see `sspnet.experiments.compare`).

eps / alpha are typed in the dataset's CLI unit (1/255 on cifar10 / tiny, [0, 1] on grey data) and converted
to pixel units here, at the edge: everything below works in pixel units."""

from __future__ import annotations

import argparse

from sspnet.cli._options import (
    add_flag,
    add_option,
    add_threads,
    field_default,
    grouped,
)
from sspnet.experiments.compare import CompareConfig, run_compare
from sspnet.experiments.compare.config import (
    AUDIT_MODES,
    AUTOATTACK_MODES,
    EXECUTORS,
    PRESETS,
    SUBMITIT_CLUSTERS,
    ClusterSettings,
    EvalSettings,
    preset_help,
)


def by_preset(name: str, section: str = "eval", none: str = "the dataset's") -> str:
    """The default of a compare option from the preset table (`preset_help`: the default preset's value, then
    the presets that differ; eps / alpha in each preset dataset's CLI unit; none: the words for None)."""
    return "the preset's, " + preset_help(name, section, none=none)


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(t.strip()) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}s, got {text!r}"
            ) from None

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    presets = "measured on this machine by --dry-run; " + "; ".join(f"{k}: {v['about']}" for k, v in PRESETS.items())
    p = subparsers.add_parser(
        "compare",
        help="the comparison experiment: several schemes x seeds, robustness and growth, REPORT.md",
        description="Train every model for every seed under one budget (runs cached by a hash of their config: a "
        "re-run reuses finished runs and resumes unfinished ones), evaluate clean/FGSM/PGD accuracy, "
        "an eps sweep, the perturbation growth ratios and a gradient-masking audit, test every model "
        "against res (seed-level t-test, per-image McNemar, Holm, minimum detectable differences) and "
        "write OUT/REPORT.md (Findings first), OUT/results.json (per-image results) and plots. "
        f"Expected times: {presets}.",
    )
    add_option(
        p, "--preset", "budget and threat model", default=field_default(CompareConfig, "preset"), choices=list(PRESETS)
    )
    add_option(
        p,
        "--models",
        "comma-separated models or scheme files; the first is the baseline",
        type=_csv(str),
        shown=_preset_entry("models"),
    )
    add_option(p, "--seeds", "number of seeds 0..S-1", type=int, shown=_preset_entry("seeds"))
    add_flag(p, "compare", "dataset", shown=_preset_entry("dataset"))
    add_flag(p, "compare", "data_root", shown="$SSPNET_DATA or ./data")
    for concept in ("out", "device"):
        add_flag(p, "compare", concept, default=field_default(CompareConfig, concept))
    add_option(
        p,
        "--jobs",
        "runs in parallel processes, --threads threads each",
        type=int,
        shown="2 on a CPU with >= 2 cores, 1 on a GPU",
    )
    add_threads(
        p,
        "compare",
        "of each run (on a CPU with --jobs 1 too, so that the numbers do not depend on --jobs; "
        "another value is part of the runs' cache hashes)",
        shown="1",
    )
    add_option(
        p, "--dry-run", "print the plan (and what is cached) without training", action="store_true", default=False
    )
    add_flag(p, "compare", "quiet", default=False)
    t = p.add_argument_group(
        "training (override the preset; eps/alpha in the dataset's CLI unit: 1/255 for cifar10/tiny, [0,1] for mnist)"
    )
    add_flag(t, "compare", "blocks", shown=by_preset("blocks", "train", "the dataset's or --grid's N"))
    add_flag(t, "compare", "batch_size", shown=by_preset("batch_size", "train"))
    for flag, kind in _TRAIN_OWN.items():
        add_option(
            t,
            flag,
            _TRAIN_HELP[flag],
            type=kind,
            shown=by_preset(flag[2:].replace("-", "_"), "train", _TRAIN_NONE.get(flag, "the dataset's")),
        )
    add_flag(t, "compare", "train_pgd_steps", shown=by_preset("steps", "train", "the dataset's or --grid's K"))
    for concept in ("train_eps", "train_alpha"):
        add_flag(t, "compare", concept, shown=by_preset(concept[6:], "train"))
    grids = [
        (name, ",".join(f"{n}:{k}" for n, k in preset["grid"] or ()) or "none") for name, preset in PRESETS.items()
    ]
    add_option(
        t, "--grid", "variants N:K (blocks:PGD iterations), e.g. 6:7,10:12", type=_csv(str), shown=grouped(grids)
    )
    _eval_arguments(p)
    _cluster_arguments(p)
    p.set_defaults(handler=run)


_TRAIN_OWN = {
    "--epochs": int,
    "--steps-per-epoch": int,
    "--opt": str,
    "--lr": float,
    "--schedule": str,
    "--adv": str,
    "--eps-warmup": float,
}
_TRAIN_NONE = {"--steps-per-epoch": "none", "--eps-warmup": "0", "--lr": "the optimizer's"}


def _preset_entry(key: str) -> str:
    """A preset's own entry (dataset, models, seeds) for --help: presets sharing a value joined."""
    return "the preset's, " + grouped([(name, preset[key]) for name, preset in PRESETS.items()])


_TRAIN_HELP = {
    "--epochs": "epochs",
    "--steps-per-epoch": "cap on optimizer steps per epoch (none: every batch)",
    "--opt": "sgd | adam | rms",
    "--lr": "learning rate",
    "--schedule": "multistep | cyclic",
    "--adv": "training adversary: none | fgsm | pgd | ball | fast",
    "--eps-warmup": "epochs over which the training eps and step grow linearly to their full value (with "
    "other --epochs the preset's share of the epochs)",
}


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("where the runs run (docs/cluster.md; OUT must be on a file system the workers share)")
    resources = {
        "--gpus-per-run": "GPUs of each job",
        "--cpus-per-run": "CPU cores of each job",
        "--timeout-min": "time limit of each Slurm job in minutes; a run cut off resumes from its last.pt at "
        "the next invocation",
        "--array-parallelism": "Slurm jobs of the array running at once",
    }
    add_option(
        c,
        "--executor",
        "local: this machine, --jobs processes; submitit: one Slurm job per run to do, as a "
        "job array (pip install 'sspnet[slurm]'); ray: one Ray task per run on the cluster of $RAY_ADDRESS, "
        "else a local Ray (pip install 'sspnet[ray]')",
        default=field_default(CompareConfig, "executor"),
        choices=EXECUTORS,
    )
    for flag, help in resources.items():
        name = flag[2:].replace("-", "_")
        default = field_default(ClusterSettings, name)
        add_option(c, flag, help, type=int, default=default, shown=_CLUSTER_WORDS.get(name))
    add_option(c, "--partition", "Slurm partition", aliases=("--slurm-partition",), shown="the cluster's")
    add_option(
        c,
        "--slurm-option",
        "an sbatch option for every job, e.g. account=proj, mem=16G, constraint=a100; repeatable",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        shown="none",
    )
    add_option(
        c,
        "--submitit-cluster",
        "auto: Slurm when sbatch is found, else local processes; local: processes on "
        "this machine (for tests); debug: in this process; slurm",
        default=field_default(ClusterSettings, "submitit_cluster"),
        choices=SUBMITIT_CLUSTERS,
    )
    add_option(
        c,
        "--emit-jobs",
        "write one shell command per run to do into FILE (run them in any order: GNU "
        "parallel, a Slurm array, a job list) and exit without running anything",
        metavar="FILE",
        shown="run the plan here",
    )
    add_option(
        c,
        "--report-only",
        "write REPORT.md / results.json from the finished runs, listing the missing ones; run nothing",
        action="store_true",
        default=False,
    )
    add_option(
        c,
        "--only-run",
        "do one run of the plan (its folder name under OUT/runs): train / resume, evaluate, audit; no report",
        metavar="RUN",
        shown="every run",
    )
    c.add_argument("--job-spec", default=None, help=argparse.SUPPRESS)  # the plan's options, from --emit-jobs


_CLUSTER_WORDS = {"cpus_per_run": "--threads, 1", "array_parallelism": "submitit's, 256"}


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    e = p.add_argument_group("evaluation (eps in the dataset's CLI unit: 1/255 for cifar10/tiny, [0,1] for mnist)")
    words = {
        "norm": by_preset("norm"),
        "eps": by_preset("eps"),
        "alpha": by_preset("alpha", none="--eps/4, at least 1/255 when rounded"),
        "pgd_steps": by_preset("steps"),
        "restarts": by_preset("restarts"),
        "n_images": by_preset("n_images", none="all"),
        "eval_batch_size": by_preset("batch_size"),
        "crit": by_preset("crit"),
    }
    for concept, shown in words.items():
        add_flag(e, "compare", concept, shown=shown)
    for flag, (key, kind, help, aliases) in _EVAL_OWN.items():
        extra = {"choices": kind} if isinstance(kind, tuple) else {"type": kind}
        if kind is bool:
            extra = {"action": argparse.BooleanOptionalAction}
        shown = by_preset(key, none=_SWEEP_RULE if key == "sweep" else "none")
        add_option(e, flag, help, aliases=aliases, shown=shown, **extra)


_SWEEP_RULE = ", ".join(f"{r:g}" for r in field_default(EvalSettings, "sweep_rel")) + " x --eps"
_EVAL_OWN = {  # flag -> (EvalSettings field, type or choices, help, aliases)
    "--sweep": ("sweep", _csv(float), "eps values of the accuracy-vs-eps sweep", ()),
    "--sweep-images": ("sweep_images", int, "test images of the sweep", ("--sweep-n",)),
    "--growth-images": ("growth_images", int, "test images for growth ratios", ("--growth-n",)),
    "--autoattack-images": (
        "autoattack_images",
        int,
        (
            "test images of AutoAttack when the audit is off (with the "
            "audit on, AutoAttack runs once, inside it, on --audit-images)"
        ),
        (),
    ),
    "--autoattack": (
        "autoattack",
        AUTOATTACK_MODES,
        ("AutoAttack standard: on, off, auto (when installed); about 5 min per run of 100 images on one CPU core"),
        (),
    ),
    "--audit": (
        "audit",
        AUDIT_MODES,
        (
            "gradient-masking audit of every run (sspnet.eval.audit: transfer PGD from the "
            "res run of the same seed, Square black box, long PGD, large eps, AutoAttack as --autoattack)"
        ),
        (),
    ),
    "--audit-images": ("audit_images", int, "test images of the audit", ()),
    "--early-stop": (
        "early_stop",
        bool,
        (
            "sweep, AutoAttack and audit attacks stop per image at its first "
            "misclassified iterate and skip clean-misclassified images (--no-early-stop runs every step)"
        ),
        (),
    ),
    "--audit-queries": ("audit_queries", int, "model calls per image of the audit's Square attack", ()),
}


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
    return ClusterSettings(
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
        timeout_min=args.timeout_min,
        array_parallelism=args.array_parallelism,
        partition=args.partition,
        slurm_options=_slurm_options(args.slurm_option),
        submitit_cluster=args.submitit_cluster,
    )


def build_config(args: argparse.Namespace) -> CompareConfig:
    """The CompareConfig of the parsed arguments, eps / alpha converted from the CLI unit to pixel units (with
    --job-spec: the plan's options it holds, and --only-run)."""
    from sspnet.cli._options import parse_threads
    from sspnet.data.specs import get_dataset_spec

    if args.job_spec is not None:
        from sspnet.experiments.compare.work.job import from_spec

        if not args.only_run:
            raise ValueError("--job-spec needs --only-run RUN")
        config = from_spec(args.job_spec)
        config.only_run = args.only_run
        return config
    unit = get_dataset_spec(args.dataset or PRESETS[args.preset]["dataset"]).eps_unit

    def pixels(v: float | None) -> float | None:
        return None if v is None else v * unit

    train = {
        "blocks": args.blocks,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "steps_per_epoch": args.steps_per_epoch,
        "opt": args.opt,
        "lr": args.lr,
        "schedule": args.schedule,
        "adv": args.adv,
        "steps": args.train_pgd_steps,
        "eps": pixels(args.train_eps),
        "alpha": pixels(args.train_alpha),
        "eps_warmup": args.eps_warmup,
    }
    ev = {
        "norm": args.norm,
        "eps": pixels(args.eps),
        "alpha": pixels(args.alpha),
        "steps": args.pgd_steps,
        "restarts": args.restarts,
        "n_images": args.n_images,
        "sweep": None if args.sweep is None else tuple(v * unit for v in args.sweep),
        "sweep_images": args.sweep_images,
        "growth_images": args.growth_images,
        "autoattack_images": args.autoattack_images,
        "autoattack": args.autoattack,
        "audit": args.audit,
        "audit_images": args.audit_images,
        "audit_queries": args.audit_queries,
        "early_stop": args.early_stop,
        "batch_size": args.eval_batch_size,
        "crit": args.crit,
    }
    return CompareConfig(
        preset=args.preset,
        dataset=args.dataset,
        models=args.models,
        seeds=args.seeds,
        out=args.out,
        train=train,
        eval=ev,
        grid=_parse_grid(args.grid),
        data_root=args.data_root,
        device=args.device,
        jobs=args.jobs,
        dry_run=args.dry_run,
        quiet=args.quiet,
        threads=parse_threads(getattr(args, "threads", None)),
        executor=args.executor,
        cluster=_cluster(args),
        emit_jobs=args.emit_jobs,
        report_only=args.report_only,
        only_run=args.only_run,
    )


def run(args: argparse.Namespace) -> int:
    """0; 1 when a job of --executor submitit / ray failed (the report lists its run as missing)."""
    summary = run_compare(build_config(args))
    return 1 if summary.get("failed") else 0
