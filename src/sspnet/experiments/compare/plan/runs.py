"""The plan of a comparison: one training run per (variant, model, seed), each in its own cached folder.

Every run lives in OUT/runs/<variant->model-s<seed>-<hash>/ where the hash covers every training option that
changes the result, so a re-run finds its runs again. A run's status, read from its folder:
- cached: trained, and evaluated with the same training and evaluation hashes (nothing to do);
- evaluate: trained (the last epoch is in metrics.jsonl and model_final.pt exists), not evaluated so;
- resume: interrupted (config.json and last.pt exist): the trainer resumes from last.pt;
- train: nothing usable there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.config import CompareConfig
from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.io.jsonio import canonical_hash
from sspnet.io.runlayout import RunLayout

RECORD_FILE = RunLayout.COMPARE
STATUSES = ("cached", "evaluate", "resume", "train")
# TrainConfig options hashed under their names before the rename, so runs trained before it stay cached (the
# values are the same: eps / alpha were already pixel units on the grey datasets, where the unit is 1)
HASHED_AS = {"steps": "iters", "eval_n_images": "test_limit"}
# training options outside IDENTITY_FIELDS that still change the numbers compare reports
EXTRA_HASHED = ("epochs", "eval_n_images", "eval_batch_size", "activation_checkpointing")


@dataclass
class PlannedRun:
    """One training run of the plan. status: cached | evaluate | resume | train; cost_units: relative cost
    (for the time-left estimate and the longest-first order of the worker pool)."""

    index: int
    model: str
    seed: int
    variant: str
    train_config: Any  # sspnet.train.TrainConfig
    train_hash: str
    run_dir: Path
    status: str = "train"
    cost_units: float = 1.0


def config_hash(obj: Any) -> str:
    """sha256 (16 hex digits) of a canonical JSON dump: `sspnet.io.jsonio.canonical_hash`."""
    return canonical_hash(obj)


def train_key(cfg: Any) -> dict[str, Any]:
    """What the training hash covers: the resolved options that change the result. Options left at None,
    and options added later at the value runs had before them (`sspnet.train.options.LEGACY_VALUES`), are
    dropped, so an option added to the trainer does not change the hashes of runs it does not change."""
    from sspnet.nn.registry import model_identity
    from sspnet.train import IDENTITY_FIELDS
    from sspnet.train.options import LEGACY_VALUES

    r = cfg.resolved()
    keys = set(IDENTITY_FIELDS) | set(EXTRA_HASHED)
    key = {
        HASHED_AS.get(k, k): v
        for k, v in dataclasses.asdict(r).items()
        if k in keys and v is not None and not (k in LEGACY_VALUES and v == LEGACY_VALUES[k])
    }
    identity = model_identity(r.model)
    if isinstance(identity, dict):  # a scheme file: hash its coefficients, not only its path
        key["scheme"] = identity
    return key


def cost_units(model: str, dataset: str, blocks: int | None, arch: str | None = None) -> float:
    """Relative cost of a run: stem + transitions + F calls of all blocks (MNIST's stem weighs about 5 F
    calls); arch: the architecture, None: the dataset's."""
    from sspnet.data.specs import get_dataset_spec
    from sspnet.nn.architectures import get_architecture
    from sspnet.nn.registry import f_calls_per_group

    architecture = get_architecture(arch or get_dataset_spec(dataset).arch)
    calls = f_calls_per_group(model, architecture.name)
    stem = 5.0 if architecture.name == "mnist" else 1.0
    return stem + (len(calls) - 1) + (blocks or architecture.blocks) * sum(calls)


def _variants(grid: list[tuple[int, int]] | None) -> list[tuple[str, dict[str, int]]]:
    if not grid:
        return [("", {})]
    return [(f"N{n}-K{k}", {"blocks": int(n), "steps": int(k)}) for n, k in grid]


def make_context(config: CompareConfig) -> CompareContext:
    """The typed context of `config`: the preset filled in and every choice checked (ValueError with one line
    naming the option), the evaluation hash."""
    res = config.resolved()
    threads = config.threads
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads must be an integer >= 1, got {threads!r}")
    eval_hash = config_hash({**res.eval.key(), **({"threads": threads} if threads not in (None, 1) else {})})
    return CompareContext(
        preset=config.preset,
        dataset=res.dataset,
        models=res.models,
        seeds=res.seeds,
        train=res.train,
        eval=res.eval,
        eval_hash=eval_hash,
        grid=res.grid,
        sources=res.sources,
        out=str(config.out),
        device=config.device,
        data_root=config.data_root,
        threads=threads,
        quiet=config.quiet,
    )


def plan_runs(ctx: CompareContext) -> list[PlannedRun]:
    """The runs of a context, every run's status read from its folder."""
    from sspnet.nn.registry import model_stem, split_step_size
    from sspnet.train import TrainConfig

    runs_dir = Path(ctx.out) / "runs"
    plan: list[PlannedRun] = []
    for label, extra in _variants(ctx.grid):
        for model in ctx.models:
            for seed in range(ctx.seeds):
                base, step_size = split_step_size(model)  # "res@0.5": res with step size 0.5
                opts = {
                    **ctx.train,
                    **extra,
                    **({} if step_size is None else {"step_size": step_size}),
                    "dataset": ctx.dataset,
                    "model": base,
                    "seed": seed,
                    "data_root": ctx.data_root,
                    "device": ctx.device,
                    "quiet": True,
                }
                tc = TrainConfig.from_dict(opts)
                tc.validate()
                key = train_key(tc)
                if ctx.threads not in (None, 1):  # CPU float results depend on the thread count
                    key["threads"] = ctx.threads
                h = config_hash(key)
                name = f"{label + '-' if label else ''}{model_stem(model)}-s{seed}-{h[:8]}"
                tc.save = str(runs_dir / name)
                plan.append(
                    PlannedRun(
                        len(plan) + 1,
                        model,
                        seed,
                        label,
                        tc,
                        h,
                        runs_dir / name,
                        cost_units=cost_units(base, ctx.dataset, tc.blocks, tc.arch),
                    )
                )
    for run in plan:
        run.status = run_status(run, ctx.eval_hash)
    return plan


def make_plan(config: CompareConfig) -> tuple[list[PlannedRun], CompareContext]:
    """The plan of runs (every run's status read from its folder) and the typed context
    (`plan.context.CompareContext`: the resolved settings, eval_hash, device, data_root, threads, out)."""
    ctx = make_context(config)
    return plan_runs(ctx), ctx


def _training_finished(run_dir: Path, epochs: int) -> bool:
    metrics = RunLayout(run_dir).metrics
    if not metrics.is_file() or not RunLayout(run_dir).checkpoint("final").is_file():
        return False
    for line in metrics.read_text(encoding="utf-8").splitlines():
        if line.strip() and json.loads(line).get("epoch") == epochs:
            return True
    return False


def trained(run: PlannedRun) -> bool:
    """The run's training is finished (model_final.pt and its last epoch in metrics.jsonl)."""
    try:
        return _training_finished(run.run_dir, run.train_config.epochs)
    except (OSError, json.JSONDecodeError):  # being written by another process
        return False


def run_status(run: PlannedRun, eval_hash: str) -> str:
    """cached (trained and evaluated with these settings) | evaluate | resume | train."""
    d = run.run_dir
    if _training_finished(d, run.train_config.epochs):
        rec = RunLayout(d).compare_record
        if rec.is_file():
            try:
                data = json.loads(rec.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return "evaluate"
            if data.get("eval_hash") == eval_hash and data.get("train_hash") == run.train_hash:
                return "cached"
        return "evaluate"
    if RunLayout(d).config.is_file() and RunLayout(d).state_file.is_file():
        return "resume"
    return "train"


def status_counts(plan: list[PlannedRun]) -> dict[str, int]:
    """Runs per status, in STATUSES order."""
    return {s: sum(r.status == s for r in plan) for s in STATUSES}


def format_plan(plan: list[PlannedRun], ctx: CompareContext, estimate: Any = None) -> str:
    """The plan as a text table (what --dry-run prints); estimate: its expected time
    (`plan.estimate.Estimate`; None: not estimated)."""
    ev, grid = ctx.eval, ctx.grid
    aa_where = "" if ev.autoattack == "off" else " in the audit" if ev.audit == "on" else f" on {ev.autoattack_images}"
    lines = [
        f"plan: preset {ctx.preset}, dataset {ctx.dataset}, {len(plan)} runs "
        f"({len(ctx.models)} models x {ctx.seeds} seeds"
        f"{' x ' + str(len(grid)) + ' grid points' if grid else ''})",
        "training: " + ", ".join(f"{k}={v}" for k, v in ctx.train.items()),
        f"evaluation: {ev.n_images or 'all'} test images, clean / FGSM / PGD-{ev.steps}"
        f"{f' x {ev.restarts} restarts' if ev.restarts > 1 else ''} at eps {ev.eps:.4g} "
        f"(step {ev.alpha:.4g}), PGD sweep eps {', '.join(f'{e:.4g}' for e in ev.sweep)} on "
        f"{ev.sweep_images}, growth on {ev.growth_images}, autoattack {ev.autoattack}{aa_where}, "
        "gradient-masking audit "
        f"{'off' if ev.audit == 'off' else f'on {ev.audit_images}'}; class-stratified image subsets",
        estimate.describe() if estimate is not None else "expected time: not estimated",
        f"{'#':>3}  {'model':10s} {'seed':>4}  {'variant':8s} {'status':9s} run folder",
    ]
    for r in plan:
        lines.append(f"{r.index:>3}  {r.model:10s} {r.seed:>4}  {r.variant or '-':8s} {r.status:9s} {r.run_dir}")
    lines.append("to do: " + ", ".join(f"{v} {k}" for k, v in status_counts(plan).items()))
    return "\n".join(lines)
