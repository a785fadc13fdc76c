"""The comparison experiment: train several schemes under one budget for several seeds, evaluate, report.

    from sspnet.experiments.compare import CompareConfig, run_compare
    summary = run_compare(CompareConfig(out="compare"))        # the default: 5 models x 3 seeds on mnist5k

The flow: `config` (presets, settings) -> `plan` (one cached run folder per variant x model x seed, each with
a status: cached / evaluate / resume / train) -> `executor` (train or resume, then `evaluation`, in worker
processes) -> `audit` (gradient masking, cached in each run folder) -> `report` (Findings, statistics and
tests, REPORT.md, results.json, plots). Results: OUT/runs/*/compare.json and audit.json, OUT/results.json,
OUT/REPORT.md and the PNG plots. On a cluster (`backends`, `jobs`; docs/cluster.md) each run to do is one job
(train, evaluate, audit) of a Slurm array or a Ray task, or a line of `--emit-jobs`; `--report-only` reports
the finished runs.
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


def _threads(config: CompareConfig) -> int:
    """Torch threads per worker process: --threads, else 1 (parallel runs instead of parallel convolutions)."""
    threads = 1 if config.threads is None else config.threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"--threads must be an integer >= 1, got {threads!r}")
    return threads


def run_compare(config: CompareConfig, train_fn: Callable | None = None) -> dict[str, Any]:
    """Run (or with dry_run, print) the plan; write the records, results.json, REPORT.md and plots.

    One comparison at a time per output folder: OUT/.sspnet.lock holds this process's PID while it runs, and a
    second `run_compare` on the same OUT raises `sspnet.io.lock.FolderLockedError` before doing anything (a dry
    run takes no lock). See `_run_compare` for train_fn and the return value.

    The other modes (`jobs`, `backends`): config.executor submitit / ray runs each run to do as a job there;
    emit_jobs writes their commands; only_run does one of them (no lock on OUT: jobs run at once); report_only
    reports the finished runs. ValueError in one line for a missing extra or modes that exclude each other.
    """
    from sspnet.experiments.compare import jobs
    from sspnet.io.lock import FolderLock

    config.check_modes()
    if config.only_run:
        return jobs.run_job(config, config.only_run)
    if config.emit_jobs:
        return jobs.emit_jobs(config)
    if config.executor != "local" and not config.report_only:
        from sspnet.experiments.compare.backends import require

        require(config.executor)  # before anything else: one line naming the extra
    if config.dry_run:
        return _run_compare(config, train_fn)
    with FolderLock(config.out, "sspnet compare"):
        if config.report_only:
            return jobs.report_only(config)
        if config.executor != "local":
            from sspnet.experiments.compare.backends import run_remote

            return run_remote(config, *make_plan(config))  # the workers choose their device
        return _run_compare(config, train_fn)


def _run_compare(config: CompareConfig, train_fn: Callable | None = None) -> dict[str, Any]:
    """Run (or with dry_run, print) the plan; write the records, results.json, REPORT.md and plots.

    train_fn: the training function (default `sspnet.train.train`; with jobs > 1 always the default, in
    worker processes). Returns the summary dict of results.json ({"plan": text, "runs": [...]} with dry_run).
    """
    import torch

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
    threads = _threads(config)
    cpu = str(device or "cpu").startswith("cpu")
    estimate = (estimate_plan(plan, settings, device, jobs, worker_threads=threads if cpu else config.threads)
                if device is not None and (config.dry_run or not config.quiet) else None)
    text = format_plan(plan, settings, estimate)
    if config.dry_run:
        return _dry_run(plan, text)
    prog = Progress(plan, config.quiet)
    prog.say(text)
    records = {r.index: read_record(r) for r in plan if r.status == "cached"}
    t_start = time.perf_counter()
    common = (settings["eval"], settings["dataset"], settings["eval_hash"], device, config.data_root)
    own_threads = torch.get_num_threads()
    if jobs == 1 and (config.threads is not None or cpu):
        # the runs train in this process, on a CPU with the threads a worker has: a run's numbers must not depend
        # on --jobs (CPU float results depend on the thread count, and the run cache does not know --jobs)
        torch.set_num_threads(threads)
    try:
        if jobs == 1:
            run_serial(prog, common, records, train_fn)
        else:
            run_pool(prog, jobs, common, records, threads=threads)
        audit_note = run_audits(plan, records, settings, device, config.data_root, jobs, prog.say, threads=threads)
    except KeyboardInterrupt:
        prog.say("interrupted: finished runs are kept, the interrupted ones resume from their last.pt; "
                 "run the same command again to continue")
        raise
    finally:
        torch.set_num_threads(own_threads)
    elapsed = time.perf_counter() - t_start
    statuses = status_counts(plan)
    summary = write_report(Path(config.out), [records[r.index] for r in plan], settings, elapsed,
                           command=" ".join(["sspnet"] + sys.argv[1:]), statuses=statuses, jobs=jobs,
                           audit_note=audit_note)
    prog.say(f"done: {len(plan)} runs ({statuses['cached']} cached) in {fmt_time(elapsed)} with {jobs} job(s); "
             f"report: {Path(config.out) / 'REPORT.md'}")
    return summary
