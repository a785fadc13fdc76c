"""The comparison experiment: train several schemes under one budget for several seeds, evaluate, report.

    from sspnet.experiments.compare import CompareConfig, run_compare
    summary = run_compare(CompareConfig(out="compare"))        # the default: 2 models x 3 seeds on mnist5k

The flow: `config` (presets, settings) -> `plan.runs.make_plan` (the typed `plan.context.CompareContext` and one cached
run folder per variant x model x seed, each with a status: cached / evaluate / resume / train) -> `drive`:
every run to do is one job (`work.job.run_job`: train or resume, evaluate, the audits it completes) submitted to
an executor (`executors`: local processes, submitit, Ray, or the commands of --emit-jobs) -> `drive.
report_finished` (records and audits collected; REPORT.md, results.json, plots; `report`). Results:
OUT/runs/*/compare.json and audit.json, OUT/results.json, OUT/REPORT.md and the PNG plots. `--only-run` does
one job; `--report-only` reports the finished runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.config import CompareConfig
from sspnet.experiments.compare.drive import JobLines, Progress, default_jobs, execute, report_finished, say_to
from sspnet.experiments.compare.executors import make_executor
from sspnet.experiments.compare.executors.base import require
from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.experiments.compare.plan.runs import PlannedRun, format_plan, make_plan, status_counts
from sspnet.experiments.compare.work.job import job_config, needs_work, run_job
from sspnet.io.progress import fmt_seconds


def _jobs(config: CompareConfig, device: str, todo: int) -> int:
    jobs = default_jobs(device) if config.jobs is None else config.jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {jobs!r}")
    return min(jobs, max(1, todo))


def run_compare(config: CompareConfig, train_fn: Callable | None = None) -> dict[str, Any]:
    """Run (or with dry_run, print) the plan; write the records, results.json, REPORT.md and plots. Returns the
    summary of results.json (with "missing", "failed"; "submitted" with a cluster executor).

    One comparison at a time per output folder: OUT/.sspnet.lock holds this process's PID while it runs, and a
    second `run_compare` on the same OUT raises `sspnet.io.lock.FolderLockedError` before doing anything (a dry
    run, --emit-jobs and --only-run take no lock). train_fn: the training function of a local run with one job
    (default `sspnet.train.train`). The other modes: config.executor submitit / ray runs each run to do as a
    job there; emit_jobs writes their commands; only_run does one of them ({"name", "state", ...} of
    `work.job.run_job`); report_only reports the finished runs. ValueError in one line for a missing extra or
    modes that exclude each other.
    """
    from sspnet.io.lock import FolderLock

    config.check_modes()
    if config.only_run:
        return run_job(make_plan(config)[1], config.only_run)
    if config.emit_jobs:
        return _emit_jobs(config)
    if config.executor != "local" and not config.report_only:
        require(config.executor)  # before anything else: one line naming the extra
    plan, ctx = make_plan(config)
    if config.dry_run:
        return _dry_run(config, plan, ctx)
    with FolderLock(config.out, "sspnet compare"):
        if config.report_only:
            return report_finished(ctx, 0.0, "report only: nothing run", status_counts(plan), say=say_to(ctx))
        if config.executor != "local":
            return _run_remote(config, plan, ctx)
        return _run_local(config, plan, ctx, train_fn)


def _local_setup(
    config: CompareConfig, plan: list[PlannedRun], ctx: CompareContext, todo: list[PlannedRun]
) -> tuple[str | None, int, str]:
    """(device, jobs, the plan's text with the expected time) of a local run; device None: a dry run's plan
    for another machine (no estimate)."""
    from sspnet.distributed import resolve_device
    from sspnet.experiments.compare.plan.estimate import estimate_plan

    try:
        device = resolve_device(config.device)
    except ValueError:
        if not config.dry_run:
            raise
        device = None
    jobs = _jobs(config, device or "cpu", len(todo))
    # the expected time from costs measured now (a few seconds); not for a quiet run, which prints nothing
    threads = ctx.run_threads(pooled=jobs > 1) if str(device or "cpu").startswith("cpu") else config.threads
    estimate = (
        estimate_plan(plan, ctx, device, jobs, worker_threads=threads)
        if device is not None and (config.dry_run or not config.quiet)
        else None
    )
    return device, jobs, format_plan(plan, ctx, estimate)


def _dry_run(config: CompareConfig, plan: list[PlannedRun], ctx: CompareContext) -> dict[str, Any]:
    text = _local_setup(config, plan, ctx, [r for r in plan if r.status != "cached"])[2]
    print(text)
    return {
        "plan": text,
        "runs": [
            {"model": r.model, "seed": r.seed, "variant": r.variant, "status": r.status, "run_dir": str(r.run_dir)}
            for r in plan
        ],
    }


def _run_local(
    config: CompareConfig, plan: list[PlannedRun], ctx: CompareContext, train_fn: Callable | None
) -> dict[str, Any]:
    """The plan's jobs on this machine (`executors.local`), then the report."""
    todo = needs_work(plan, ctx)
    device, jobs, text = _local_setup(config, plan, ctx, todo)
    prog = Progress(plan, config.quiet, todo)
    prog.say(text)
    t_start = time.perf_counter()
    job_ctx = ctx.replace(device=device, quiet=True)  # the driver prints the progress
    execute(job_ctx, todo, make_executor(config, job_ctx, jobs, train_fn), prog, prog.say)
    elapsed = time.perf_counter() - t_start
    statuses = status_counts(plan)
    summary = report_finished(ctx, elapsed, jobs, statuses)
    prog.say(
        f"done: {len(plan)} runs ({statuses['cached']} cached) in {fmt_seconds(elapsed)} with {jobs} job(s); "
        f"report: {Path(config.out) / 'REPORT.md'}"
    )
    return summary


def _run_remote(config: CompareConfig, plan: list[PlannedRun], ctx: CompareContext) -> dict[str, Any]:
    """Every run to do as one job of submitit / Ray (the workers choose their device), then the report of the
    finished runs listing the missing ones."""
    say = say_to(ctx)
    say(format_plan(plan, ctx))
    todo = needs_work(plan, ctx)
    t0, how = time.perf_counter(), "nothing to run"
    failed: list[str] = []
    submitted: list[str] = []
    if todo:
        job_ctx = make_plan(job_config(config))[1]  # OUT absolute, the data folder explicit
        executor = make_executor(config, job_ctx, cwd=os.getcwd())
        how = executor.describe(len(todo))
        failed, submitted = execute(job_ctx, todo, executor, JobLines(len(todo), say), say)
    else:
        say(f"nothing to run: all {len(plan)} runs are finished")
    summary = report_finished(ctx, time.perf_counter() - t0, how, status_counts(plan), failed, say)
    summary["submitted"] = submitted
    return summary


def _emit_jobs(config: CompareConfig) -> dict[str, Any]:
    """Write one job command per run to do into config.emit_jobs (one a line); run nothing."""
    plan, ctx = make_plan(config)
    todo = needs_work(plan, ctx)
    executor = make_executor(config, ctx)
    for run in todo:
        executor.submit(ctx, run)
    executor.close()
    path, lines, say = Path(str(config.emit_jobs)), executor.lines, say_to(ctx)
    if lines:
        say(
            f"wrote {len(lines)} job command(s) for {len(plan)} planned runs to {path}; run them in any order "
            f"(e.g. `parallel -j 4 < {path}`, or a Slurm array --array=1-{len(lines)} running "
            f"`sed -n ${{SLURM_ARRAY_TASK_ID}}p {path} | bash`), then the same options with --report-only"
        )
    else:
        say(f"nothing to do: all {len(plan)} runs are finished ({path} is empty); --report-only writes the report")
    return {"emit_jobs": str(path), "commands": lines, "runs": [r.run_dir.name for r in todo]}
