"""The driver of a comparison, the same whatever executes the jobs: submit every run to do (`work.job.needs_work`)
as one job (`work.job.run_job`) to an executor (`executors`), wait for them with a progress line per finished job,
then `report_finished`: collect the finished runs' records, merge their cached audits, write the report."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.experiments.compare.plan.runs import PlannedRun, plan_runs
from sspnet.experiments.compare.work.job import busy
from sspnet.experiments.compare.work.run import read_record
from sspnet.io.progress import fmt_seconds
from sspnet.io.runlayout import RunLayout


def say_to(ctx: CompareContext) -> Callable[[str], None]:
    """print (flushed) unless ctx.quiet."""
    return (lambda msg: None) if ctx.quiet else (lambda msg: print(msg, flush=True))


class JobLines:
    """The progress of a cluster executor: '[2/4] ssp2-s0-1a2b3c4d: clean 97.1%  FGSM ...  (12 s on node3)'
    per finished job (the local executor uses `Progress`)."""

    def __init__(self, n: int, say: Callable[[str], None]):
        self.k, self.n, self.say = 0, n, say

    def start(self, run: PlannedRun) -> None:
        pass

    def finish(self, run: PlannedRun, result: dict[str, Any] | None) -> None:
        try:
            e = json.loads(RunLayout(run.run_dir).compare_record.read_text(encoding="utf-8"))["eval"]
            nums = f"clean {e['clean']:.1f}%  FGSM {e['fgsm']:.1f}%  PGD {e['pgd']:.1f}%"
        except (OSError, ValueError, KeyError):
            nums = "not finished"
        self.k += 1
        where = f"  ({result['seconds']:.0f} s on {result['host']})" if result and "host" in result else ""
        self.say(f"[{self.k}/{self.n}] {run.run_dir.name}: {nums}{where}")


def execute(
    ctx: CompareContext, todo: list[PlannedRun], executor: Any, progress: Any, say: Callable[[str], None]
) -> tuple[list[str], list[str]]:
    """Submit the runs of `todo` (a run another process works on, by its live lock, is not submitted: waited
    for) to `executor`, wait for every job; returns the folder names of the runs whose job failed and of the
    runs submitted. On
    Ctrl-C (SIGTERM, SIGHUP) the executor is cancelled, its line printed, and KeyboardInterrupt raised."""
    watch = {}
    for run in todo:
        who = busy(run.run_dir)
        if who:
            watch[run.run_dir.name] = run
            say(f"{run.run_dir.name}: in progress in {who}; not submitted, waiting for it")
    failed: list[str] = []
    executor.on_start = progress.start
    submit = [r for r in todo if r.run_dir.name not in watch]
    try:
        for run in submit:
            executor.submit(ctx, run)
        what = executor.submitted()
        if what:
            say(f"submitted {len(submit)} run(s) as {what}: {', '.join(r.run_dir.name for r in submit)}")
        while executor.active() or watch:
            if executor.active():
                finished = executor.wait(executor.poll if watch else None)
            else:  # only runs of other processes left: wait for their locks
                time.sleep(executor.poll)
                finished = []
            for f in finished:
                if f.error is not None:
                    failed.append(f.run.run_dir.name)
                    say(f"{f.run.run_dir.name}: failed: {f.error}")
                elif f.result.get("state") == "busy":
                    watch[f.run.run_dir.name] = f.run
                    say(f"{f.run.run_dir.name}: another job works on it; waiting for it")
                else:
                    progress.finish(f.run, f.result)
            for name in [m for m, r in watch.items() if busy(r.run_dir) is None]:
                run = watch.pop(name)
                progress.finish(run, _result_of(run))
    except KeyboardInterrupt:
        msg = executor.cancel()
        if executor.announce_interrupt:
            print(msg, flush=True)
        else:
            say(msg)
        raise
    except BaseException:
        executor.cancel()
        raise
    finally:
        executor.close()
    return failed, [r.run_dir.name for r in submit]


def _result_of(run: PlannedRun) -> dict[str, Any] | None:
    """A run finished by another process: its record as a job result (None when it did not finish)."""
    try:
        return {"record": read_record(run), "audit_flags": {}, "state": "done"}
    except (OSError, ValueError):
        return None


def collect(plan: list[PlannedRun], ctx: CompareContext) -> tuple[dict[int, dict[str, Any]], str | None]:
    """The records of the finished (cached) runs with their cached audits merged in, and why the audit did
    not run (None when it did)."""
    from sspnet.experiments.compare.work.audit import audit_function, merge_audit, plan_audits, read_cached

    records = {r.index: read_record(r) for r in plan if r.status == "cached"}
    ev = ctx.eval
    if ev.audit == "off":
        return records, "switched off (audit off)"
    if audit_function() is None:
        return records, "this version of sspnet.eval has no gradient-masking audit"
    for job in plan_audits(plan, ctx.eval_hash, ev):
        audit = read_cached(job) if job.run.index in records else None
        if audit is not None:
            merge_audit(records[job.run.index], audit)
    return records, None


def report_finished(
    ctx: CompareContext,
    elapsed: float,
    how: int | str,
    statuses: dict[str, int],
    failed: list[str] | tuple = (),
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The one place the report is made: the plan's statuses read again, the finished runs' records with their
    audits (`collect`), REPORT.md / results.json / plots listing the missing runs (`report.writer.write_report`).
    ValueError when no run is finished. how: parallel local jobs, or where the runs ran; statuses: the
    statuses before this invocation; the summary gets "missing" and "failed" (runs whose job failed now).
    say: the line naming the report (None: no line)."""
    from sspnet.experiments.compare.report.writer import write_report

    plan = plan_runs(ctx)
    records, note = collect(plan, ctx)
    if not records:
        raise ValueError(
            f"no finished run in {ctx.out}: nothing to report; run `sspnet compare` with the same "
            "options (or the commands of --emit-jobs) first"
        )
    missing: list[dict[str, Any]] = [
        {"model": r.model, "seed": r.seed, "variant": r.variant, "status": r.status, "run_dir": str(r.run_dir)}
        for r in plan
        if r.status != "cached"
    ]
    summary = write_report(
        Path(ctx.out),
        [records[i] for i in sorted(records)],
        ctx,
        elapsed,
        command=" ".join(["sspnet"] + sys.argv[1:]),
        statuses=statuses,
        jobs=how,
        audit_note=note,
        missing=missing,
    )
    summary["failed"] = list(failed)
    if say is not None:
        gone = f"; missing: {', '.join(Path(m['run_dir']).name for m in missing)}" if missing else ""
        say(f"report of {len(records)} of {len(plan)} runs{gone}: {Path(ctx.out) / 'REPORT.md'}")
    return summary


def default_jobs(device: str) -> int:
    """Parallel runs: 2 on a CPU with >= 2 cores (one thread each), 1 on a GPU."""
    return 1 if device != "cpu" else max(1, min(2, os.cpu_count() or 1))


class Progress:
    """Progress lines over the whole plan: runs done / to do, elapsed, time left from the measured throughput
    (seconds per cost unit of the runs made in this invocation, parallel jobs included). todo: the runs
    submitted (default: those not cached)."""

    def __init__(self, plan: list[PlannedRun], quiet: bool, todo: list[PlannedRun] | None = None):
        self.plan, self.quiet = plan, quiet
        self.t0 = time.perf_counter()
        self.units_done = 0.0
        self.todo = [r for r in plan if r.status != "cached"] if todo is None else list(todo)
        self.done = len(plan) - len(self.todo)
        self.running: set[int] = set()

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def _left(self) -> str:
        """Time left: elapsed / units done so far, runs in progress counted as half done."""
        if self.units_done <= 0:
            return "? (after the first run)"
        half = 0.5 * sum(r.cost_units for r in self.todo if r.index in self.running)
        rate = (time.perf_counter() - self.t0) / (self.units_done + half)
        return "~" + fmt_seconds(rate * (sum(r.cost_units for r in self.todo) - half))

    def _where(self) -> str:
        return f"elapsed {fmt_seconds(time.perf_counter() - self.t0)}, left {self._left() if self.todo else '0:00'}"

    def start(self, run: PlannedRun) -> None:
        self.running.add(run.index)
        variant = " " + run.variant if run.variant else ""
        self.say(
            f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}{variant}: {run.status}... "
            f"(done {self.done}, to do {len(self.todo)}, {self._where()})"
        )

    def finish(self, run: PlannedRun, result: dict[str, Any]) -> None:
        """A job of `work.job.run_job` ended: its record's numbers, then one line per audit it did."""
        self.units_done += run.cost_units if run.status in ("train", "resume") else 0.2 * run.cost_units
        self.done += 1
        self.todo = [r for r in self.todo if r.index != run.index]
        self.running.discard(run.index)
        rec = (result or {}).get("record")
        if rec is None:
            self.say(
                f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}: not finished (another process "
                f"worked on it) | done {self.done}/{len(self.plan)}, to do {len(self.todo)}, {self._where()}"
            )
            return
        e = rec["eval"]
        growth = rec["growth"]["adversarial"]["groups"]["2"][-1]
        self.say(
            f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}: clean {e['clean']:.1f}%  FGSM "
            f"{e['fgsm']:.1f}%  PGD {e['pgd']:.1f}%  growth(L2) {growth:.3f}  train "
            f"{rec['train_seconds']:.1f}s  eval {e['seconds']:.1f}s | done {self.done}/{len(self.plan)}, "
            f"to do {len(self.todo)}, {self._where()}"
        )
        names = {r.run_dir.name: r for r in self.plan}
        for name, flags in ((result or {}).get("audit_flags") or {}).items():
            r = names.get(name)
            self.say(f"audit {r.model + ' seed ' + str(r.seed) if r else name}: {flags}")
