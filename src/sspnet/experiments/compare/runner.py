"""The comparison experiment: train several schemes under one budget for several seeds, evaluate, report.

    from sspnet.experiments.compare import CompareConfig, run_compare
    summary = run_compare(CompareConfig(out="compare"))        # the default: 5 models x 3 seeds on mnist5k

The flow: `config` (presets, settings) -> `plan` (one cached run folder per variant x model x seed, each with
a status: cached / evaluate / resume / train) -> `executor` (train or resume, then `evaluation`, in worker
processes) -> `audit` (gradient masking, cached in each run folder) -> `report` (Findings, statistics and
tests, REPORT.md, results.json, plots). Results: OUT/runs/*/compare.json and audit.json, OUT/results.json,
OUT/REPORT.md and the PNG plots.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

from sspnet.experiments.compare.config import CompareConfig
from sspnet.experiments.compare.executor import Progress, default_jobs, fmt_time, read_record, run_pool, run_serial
from sspnet.experiments.compare.plan import PlannedRun, format_plan, make_plan, status_counts


def _dry_run(plan: list[PlannedRun], text: str) -> dict[str, Any]:
    print(text)
    return {"plan": text, "runs": [{"model": r.model, "seed": r.seed, "variant": r.variant, "status": r.status,
                                    "run_dir": str(r.run_dir)} for r in plan]}


def _jobs(config: CompareConfig, device: str, todo: int) -> int:
    jobs = default_jobs(device) if config.jobs is None else config.jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {jobs!r}")
    return min(jobs, max(1, todo))


def run_compare(config: CompareConfig, train_fn: Callable | None = None) -> dict[str, Any]:
    """Run (or with dry_run, print) the plan; write the records, results.json, REPORT.md and plots.

    train_fn: the training function (default `sspnet.train.train`; with jobs > 1 always the default, in
    worker processes). Returns the summary dict of results.json ({"plan": text, "runs": [...]} with dry_run).
    """
    from sspnet.distributed import resolve_device
    from sspnet.experiments.compare.audit import run_audits
    from sspnet.experiments.compare.estimate import estimate_plan
    from sspnet.experiments.compare.report import write_report

    plan, settings = make_plan(config)
    try:
        device = resolve_device(config.device)
    except ValueError:
        if not config.dry_run:
            raise
        device = None  # a plan for another machine: no estimate here
    jobs = _jobs(config, device or "cpu", sum(r.status != "cached" for r in plan))
    # the expected time from costs measured now (a few seconds); not for a quiet run, which prints nothing
    estimate = (estimate_plan(plan, settings, device, jobs)
                if device is not None and (config.dry_run or not config.quiet) else None)
    text = format_plan(plan, settings, estimate)
    if config.dry_run:
        return _dry_run(plan, text)
    prog = Progress(plan, config.quiet)
    prog.say(text)
    records = {r.index: read_record(r) for r in plan if r.status == "cached"}
    t_start = time.perf_counter()
    common = (settings["eval"], settings["dataset"], settings["eval_hash"], device, config.data_root)
    try:
        if jobs == 1:
            run_serial(prog, common, records, train_fn)
        else:
            run_pool(prog, jobs, common, records)
        audit_note = run_audits(plan, records, settings, device, config.data_root, jobs, prog.say)
    except KeyboardInterrupt:
        prog.say("interrupted: finished runs are kept, the interrupted ones resume from their last.pt; "
                 "run the same command again to continue")
        raise
    elapsed = time.perf_counter() - t_start
    statuses = status_counts(plan)
    summary = write_report(Path(config.out), [records[r.index] for r in plan], settings, elapsed,
                           command=" ".join(["sspnet"] + sys.argv[1:]), statuses=statuses, jobs=jobs,
                           audit_note=audit_note)
    prog.say(f"done: {len(plan)} runs ({statuses['cached']} cached) in {fmt_time(elapsed)} with {jobs} job(s); "
             f"report: {Path(config.out) / 'REPORT.md'}")
    return summary
