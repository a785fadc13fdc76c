"""The one unit of work of a comparison, `run_job(ctx, run)`, whatever executes it (the local process pool or
this process, submitit, Ray, a line of `--emit-jobs` run by `--only-run`), and the job's command line.

A job does what one run needs, in its run folder: train or resume it, evaluate it (RUN_DIR/compare.json) and
the gradient-masking audits it completes: its own and those whose transfer source it is, each once both runs
are trained (whichever of the two finishes second audits), so jobs may run in any order and at once. It
rebuilds the plan from the context, so it needs nothing but the context and the output folder: on a cluster
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.config import CompareConfig
from sspnet.experiments.compare.plan.context import CompareContext, apply_threads
from sspnet.experiments.compare.plan.runs import PlannedRun, plan_runs, run_status, trained
from sspnet.io.runlayout import RunLayout

JOB_LOCK = RunLayout.JOB_LOCK  # RUN_DIR/.compare-job/.sspnet.lock: a job works on the run
AUDIT_LOCK = RunLayout.AUDIT_LOCK  # RUN_DIR/.compare-audit/.sspnet.lock: a job audits the run
# the options that make the plan (hashes, run folders) and how a job prints: all a job command carries
SPEC_FIELDS = (
    "preset",
    "dataset",
    "models",
    "seeds",
    "out",
    "train",
    "eval",
    "grid",
    "data_root",
    "device",
    "threads",
    "quiet",
)


def _say(ctx: Any, msg: str) -> None:
    if not ctx.quiet:
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


def needs_work(plan: list[PlannedRun], ctx: CompareContext) -> list[PlannedRun]:
    """The runs a job must do: not cached, or cached without their audit."""
    from sspnet.experiments.compare.work.audit import audit_function, plan_audits, read_cached

    ev = ctx.eval
    unaudited: set[int] = set()
    if ev.audit != "off" and audit_function() is not None:
        unaudited = {j.run.index for j in plan_audits(plan, ctx.eval_hash, ev) if read_cached(j) is None}
    return [r for r in plan if r.status != "cached" or r.index in unaudited]


def find_run(plan: list[PlannedRun], name: str) -> PlannedRun:
    """The run whose folder is named `name`; ValueError when these options do not plan it."""
    for run in plan:
        if run.run_dir.name == name:
            return run
    names = ", ".join(r.run_dir.name for r in plan[:6]) + (", ..." if len(plan) > 6 else "")
    raise ValueError(
        f"--only-run {name}: no such run in the plan of these options (other options or another "
        f"sspnet version give other hashes); the plan's runs: {names}"
    )


def run_job(
    ctx: CompareContext, run: PlannedRun | str, cwd: str | None = None, train_fn: Callable | None = None
) -> dict[str, Any]:
    """Do one run of the plan of `ctx` (a PlannedRun or its folder name): train / resume, evaluate, and the
    audits it completes, under the run's job lock, in the driver's working directory `cwd`. train_fn: the
    training function (default `sspnet.train.train`). Returns {"name", "state": done | busy, "status",
    "audits": the audited runs' folder names, "audit_flags": {name: flag names}, "record": the run's
    compare.json (None when busy), "host", "seconds"}."""
    from sspnet.distributed import resolve_device
    from sspnet.experiments.compare.work.run import execute_run, read_record
    from sspnet.io.allocator import tune_allocator
    from sspnet.io.lock import FolderLock, FolderLockedError

    tune_allocator()  # a submitit / Ray worker process is not started by the CLI
    t0 = time.perf_counter()
    if cwd:
        os.chdir(cwd)  # relative scheme files and data folders, as the driver saw them
    name = run if isinstance(run, str) else run.run_dir.name
    plan = plan_runs(ctx)
    run = find_run(plan, name)
    device = resolve_device(ctx.device)
    apply_threads(ctx.replace(device=device))  # as every executor: the numbers must not depend on it
    out: dict[str, Any] = {"name": name, "host": socket.gethostname(), "audits": [], "audit_flags": {}, "record": None}
    lock = FolderLock(run.run_dir / JOB_LOCK, f"sspnet compare job {name}")
    try:
        lock.acquire()
    except FolderLockedError as exc:
        _say(ctx, f"{name}: nothing done: {exc}")
        return {**out, "state": "busy", "status": run.status, "seconds": time.perf_counter() - t0}
    try:
        run.status = run_status(run, ctx.eval_hash)  # another job may have finished it meanwhile
        _say(ctx, f"{name}: {run.status} on {device} ({out['host']})")
        if run.status != "cached":
            execute_run(run, ctx.eval, ctx.dataset, ctx.eval_hash, device, ctx.data_root, train_fn=train_fn)
        out["audit_flags"] = _audits(plan, run, ctx, device)
        out["audits"] = list(out["audit_flags"])
        out["record"] = read_record(run)
    finally:
        lock.release()
    seconds = time.perf_counter() - t0
    audits = out["audits"]
    _say(ctx, f"{name}: done in {seconds:.1f} s{' (audited ' + ', '.join(audits) + ')' if audits else ''}")
    return {**out, "state": "done", "status": run.status, "seconds": seconds}


def _audits(plan: list[PlannedRun], run: PlannedRun, ctx: CompareContext, device: str) -> dict[str, str]:
    """The audits that involve `run` (as the audited run or its transfer source) and can be done now: both runs
    trained, not cached, no other job on it. Returns {audited run's folder name: its flags ("no flag")}."""
    from sspnet.experiments.compare.work.audit import audit_function, execute_audit, plan_audits, read_cached
    from sspnet.io.lock import FolderLock, FolderLockedError

    ev = ctx.eval
    if ev.audit == "off" or audit_function() is None:
        return {}
    done = {}
    for job in plan_audits(plan, ctx.eval_hash, ev):
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
                result = execute_audit(job, ev, ctx.dataset, device, ctx.data_root)
                flags = ", ".join(f.get("name", "?") for f in result.get("flags") or []) or "no flag"
                done[job.run.run_dir.name] = f"{flags} ({result['seconds']:.0f} s)"
        finally:
            lock.release()
    return done


def job_command(config: CompareConfig, name: str) -> str:
    """The shell command that does run `name` as `run_job` (absolute paths; the plan's options inline)."""
    spec = to_spec(job_config(config))
    return (
        f"cd {shlex.quote(os.getcwd())} && {shlex.quote(sys.executable)} -m sspnet compare --job-spec "
        f"{shlex.quote(spec)} --only-run {shlex.quote(name)}"
    )
