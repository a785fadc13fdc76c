"""One planned run as a self-contained job, and what is built on it: `--only-run`, `--emit-jobs`, the report
of the finished runs (`--report-only`, and after `--executor submitit | ray`).

A job (`run_job`) does what one run needs, in its run folder: train or resume it, evaluate it
(RUN_DIR/compare.json) and the gradient-masking audits it completes: its own and those whose transfer source
it is, each once both runs are trained (whichever of the two finishes second audits), so jobs may run in any
order and at once. It rebuilds the plan from the options, so it needs nothing but them and the output folder:
OUT must be on a file system every worker sees. While a job works on a run it holds the lock
RUN_DIR/.compare-job/.sspnet.lock (`sspnet.io.lock`): a second job for the same run does nothing, and a driver
does not submit the run again.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.config import CompareConfig
from sspnet.experiments.compare.plan import PlannedRun, make_plan, run_status, status_counts, trained

JOB_LOCK = ".compare-job"  # RUN_DIR/.compare-job/.sspnet.lock: a job works on the run
AUDIT_LOCK = ".compare-audit"  # RUN_DIR/.compare-audit/.sspnet.lock: a job audits the run
# the options that make the plan (hashes, run folders) and how a job prints: all a job command carries
SPEC_FIELDS = ("preset", "dataset", "models", "seeds", "out", "train", "eval", "grid", "data_root", "device",
               "threads", "quiet")


def _say(config: CompareConfig, msg: str) -> None:
    if not config.quiet:
        print(msg, flush=True)


def job_config(config: CompareConfig) -> CompareConfig:
    """The plan's options alone, as a job elsewhere gets them: OUT absolute, the data folder explicit."""
    opts = {k: getattr(config, k) for k in SPEC_FIELDS}
    opts["out"] = os.path.abspath(config.out)
    root = config.data_root or os.environ.get("SSPNET_DATA")  # not hashed: a worker may lack the variable
    opts["data_root"] = os.path.abspath(root) if root else None
    return CompareConfig(**opts)


def to_spec(config: CompareConfig) -> str:
    """The plan's options as one line of JSON (floats round-trip exactly, so the hashes do too); options left
    at None (the preset's value) are left out."""
    opts = {k: getattr(config, k) for k in SPEC_FIELDS}
    opts.update({k: {o: v for o, v in opts[k].items() if v is not None} for k in ("train", "eval")})
    return json.dumps({k: v for k, v in opts.items() if v is not None}, sort_keys=True, separators=(",", ":"))


def from_spec(text: str) -> CompareConfig:
    """The CompareConfig of `to_spec`; ValueError in one line for anything else."""
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--job-spec is not JSON: {exc}") from None
    if not isinstance(opts, dict) or not set(opts) <= set(SPEC_FIELDS):
        raise ValueError(f"--job-spec takes a JSON object with keys among {', '.join(SPEC_FIELDS)}")
    if opts.get("grid") is not None:
        opts["grid"] = [tuple(g) for g in opts["grid"]]
    return CompareConfig(**opts)


def busy(run_dir: Path) -> str | None:
    """Who works on the run now ('sspnet compare job (PID 12 on node3)'), from the job's or the trainer's live
    lock; None when nobody (no lock file, or one left by a dead process)."""
    from sspnet.io.lock import LOCK_FILE

    for path in (run_dir / JOB_LOCK / LOCK_FILE, run_dir / LOCK_FILE):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted: the holder is gone
            fcntl.flock(fd, fcntl.LOCK_UN)
        except ImportError:  # pragma: no cover - Windows: a lock file is held while it exists
            pass
        except OSError:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            held = dict(ln.partition("=")[::2] for ln in text.splitlines())
            return f"{held.get('command', 'sspnet')} (PID {held.get('pid', '?')} on {held.get('host', '?')})"
        finally:
            os.close(fd)
    return None


def needs_work(plan: list[PlannedRun], settings: dict[str, Any]) -> list[PlannedRun]:
    """The runs a job must do: not cached, or cached without their audit."""
    from sspnet.experiments.compare.audit import audit_function, plan_audits, read_cached

    ev = settings["eval"]
    unaudited: set[int] = set()
    if ev.audit != "off" and audit_function() is not None:
        unaudited = {j.run.index for j in plan_audits(plan, settings["eval_hash"], ev) if read_cached(j) is None}
    return [r for r in plan if r.status != "cached" or r.index in unaudited]


def find_run(plan: list[PlannedRun], name: str) -> PlannedRun:
    """The run whose folder is named `name`; ValueError when these options do not plan it."""
    for run in plan:
        if run.run_dir.name == name:
            return run
    names = ", ".join(r.run_dir.name for r in plan[:6]) + (", ..." if len(plan) > 6 else "")
    raise ValueError(f"--only-run {name}: no such run in the plan of these options (other options or another "
                     f"sspnet version give other hashes); the plan's runs: {names}")


def run_job(config: CompareConfig, name: str, cwd: str | None = None) -> dict[str, Any]:
    """Do the run `name` of the plan of `config` (train / resume, evaluate, audits), in the driver's working
    directory `cwd`. Returns {"name", "state": done | busy, "status", "audits", "host", "seconds"}."""
    import torch

    from sspnet.distributed import resolve_device
    from sspnet.experiments.compare.executor import execute_run
    from sspnet.experiments.compare.runner import _threads
    from sspnet.io.allocator import tune_allocator
    from sspnet.io.lock import FolderLock, FolderLockedError

    tune_allocator()  # a submitit / Ray worker process is not started by the CLI
    t0 = time.perf_counter()
    if cwd:
        os.chdir(cwd)  # relative scheme files and data folders, as the driver saw them
    plan, settings = make_plan(config)
    run = find_run(plan, name)
    device = resolve_device(config.device)
    if config.threads is not None or device.startswith("cpu"):
        torch.set_num_threads(_threads(config))  # as the local executor: the numbers must not depend on it
    out = {"name": name, "host": socket.gethostname()}
    lock = FolderLock(run.run_dir / JOB_LOCK, f"sspnet compare job {name}")
    try:
        lock.acquire()
    except FolderLockedError as exc:
        _say(config, f"{name}: nothing done: {exc}")
        return {**out, "state": "busy", "status": run.status, "audits": [], "seconds": time.perf_counter() - t0}
    try:
        run.status = run_status(run, settings["eval_hash"])  # another job may have finished it meanwhile
        _say(config, f"{name}: {run.status} on {device} ({out['host']})")
        if run.status != "cached":
            execute_run(run, settings["eval"], settings["dataset"], settings["eval_hash"], device, config.data_root)
        audits = _audits(plan, run, settings, device, config.data_root)
    finally:
        lock.release()
    seconds = time.perf_counter() - t0
    _say(config, f"{name}: done in {seconds:.1f} s{' (audited ' + ', '.join(audits) + ')' if audits else ''}")
    return {**out, "state": "done", "status": run.status, "audits": audits, "seconds": seconds}


def _audits(plan: list[PlannedRun], run: PlannedRun, settings: dict[str, Any], device: str,
            data_root: str | None) -> list[str]:
    """The audits that involve `run` (as the audited run or its transfer source) and can be done now: both runs
    trained, not cached, no other job on it. Returns the audited runs' folder names."""
    from sspnet.experiments.compare.audit import audit_function, execute_audit, plan_audits, read_cached
    from sspnet.io.lock import FolderLock, FolderLockedError

    ev = settings["eval"]
    if ev.audit == "off" or audit_function() is None:
        return []
    done = []
    for job in plan_audits(plan, settings["eval_hash"], ev):
        if not (job.run is run or job.source is run) or read_cached(job) is not None:
            continue
        if not trained(job.run) or (job.source is not None and not trained(job.source)):
            continue  # the other run's job audits when it is trained
        lock = FolderLock(job.run.run_dir / AUDIT_LOCK, "sspnet compare audit")
        try:
            lock.acquire()
        except FolderLockedError:
            continue  # another job audits it
        try:
            if read_cached(job) is None:
                execute_audit(job, ev, settings["dataset"], device, data_root)
                done.append(job.run.run_dir.name)
        finally:
            lock.release()
    return done


def job_command(config: CompareConfig, name: str) -> str:
    """The shell command that does run `name` as `run_job` (absolute paths; the plan's options inline)."""
    spec = to_spec(job_config(config))
    return (f"cd {shlex.quote(os.getcwd())} && {shlex.quote(sys.executable)} -m sspnet compare --job-spec "
            f"{shlex.quote(spec)} --only-run {shlex.quote(name)}")


def emit_jobs(config: CompareConfig) -> dict[str, Any]:
    """Write one job command per run to do into config.emit_jobs (one a line); run nothing."""
    from sspnet.io.files import atomic_write_text

    plan, settings = make_plan(config)
    todo = needs_work(plan, settings)
    lines = [job_command(config, r.run_dir.name) for r in todo]
    path = Path(config.emit_jobs)
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    if lines:
        _say(config, f"wrote {len(lines)} job command(s) for {len(plan)} planned runs to {path}; run them in any "
                     f"order (e.g. `parallel -j 4 < {path}`, or a Slurm array --array=1-{len(lines)} running "
                     f"`sed -n ${{SLURM_ARRAY_TASK_ID}}p {path} | bash`), then the same options with --report-only")
    else:
        _say(config, f"nothing to do: all {len(plan)} runs are finished ({path} is empty); --report-only "
                     "writes the report")
    return {"emit_jobs": str(path), "commands": lines, "runs": [r.run_dir.name for r in todo]}


def collect(plan: list[PlannedRun], settings: dict[str, Any]) -> tuple[dict[int, dict[str, Any]], str | None]:
    """The records of the finished (cached) runs with their cached audits merged in, and why the audit did
    not run (None when it did)."""
    from sspnet.experiments.compare.audit import audit_function, merge_audit, plan_audits, read_cached
    from sspnet.experiments.compare.executor import read_record

    records = {r.index: read_record(r) for r in plan if r.status == "cached"}
    ev = settings["eval"]
    if ev.audit == "off":
        return records, "switched off (audit off)"
    if audit_function() is None:
        return records, "this version of sspnet.eval has no gradient-masking audit"
    for job in plan_audits(plan, settings["eval_hash"], ev):
        audit = read_cached(job) if job.run.index in records else None
        if audit is not None:
            merge_audit(records[job.run.index], audit)
    return records, None


def report(config: CompareConfig, plan: list[PlannedRun], settings: dict[str, Any], elapsed: float, how: str,
           statuses: dict[str, int], failed: list[str] | tuple = ()) -> dict[str, Any]:
    """REPORT.md and results.json of the finished runs, listing the missing ones; ValueError when none is
    finished. The summary gets "missing" and "failed" (runs whose job failed in this invocation)."""
    from sspnet.experiments.compare.report import write_report

    records, note = collect(plan, settings)
    if not records:
        raise ValueError(f"no finished run in {config.out}: nothing to report; run `sspnet compare` with the same "
                         "options (or the commands of --emit-jobs) first")
    missing = [{"model": r.model, "seed": r.seed, "variant": r.variant, "status": r.status,
                "run_dir": str(r.run_dir)} for r in plan if r.status != "cached"]
    summary = write_report(Path(config.out), [records[i] for i in sorted(records)], settings, elapsed,
                           command=" ".join(["sspnet"] + sys.argv[1:]), statuses=statuses, jobs=how,
                           audit_note=note, missing=missing)
    summary["failed"] = list(failed)
    gone = f"; missing: {', '.join(Path(m['run_dir']).name for m in missing)}" if missing else ""
    _say(config, f"report of {len(records)} of {len(plan)} runs{gone}: {Path(config.out) / 'REPORT.md'}")
    return summary


def report_only(config: CompareConfig) -> dict[str, Any]:
    """`--report-only`: the report of the runs finished so far; nothing is trained or evaluated."""
    plan, settings = make_plan(config)
    return report(config, plan, settings, 0.0, "report only: nothing run", status_counts(plan))
