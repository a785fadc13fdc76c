"""`--executor submitit | ray`: every run to do becomes one job (`jobs.run_job`: train or resume, evaluate,
audits, all written into its run folder) of a Slurm job array (submitit) or a Ray task; the driver prints a
line per finished job, then reports the finished runs and lists the missing ones (`jobs.report`).

Both need OUT on a file system the workers share. A run that another job is working on (its live lock) is not
submitted again: the driver waits for it. Interrupted, the driver leaves Slurm jobs running (the next
invocation collects them) and cancels Ray tasks (they save last.pt; the next invocation resumes them).
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.config import ClusterSettings, CompareConfig
from sspnet.experiments.compare.jobs import _say, busy, job_config, needs_work, report, run_job
from sspnet.experiments.compare.plan import PlannedRun, format_plan, make_plan, status_counts

EXTRAS = {"submitit": ("submitit", "slurm"), "ray": ("ray", "ray")}  # executor: (module, pip extra)


def require(executor: str) -> Any:
    """The module of an executor; ValueError in one line naming the extra when it is not installed."""
    module, extra = EXTRAS[executor]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"--executor {executor} needs {module}: pip install 'sspnet[{extra}]'") from None


def _cpus(config: CompareConfig) -> int:
    return config.cluster.cpus_per_run or config.threads or 1


def _last_line(exc: BaseException) -> str:
    """The last line of the job's traceback (submitit puts it between two '----' lines), else of the error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    rules = [i for i, ln in enumerate(lines) if ln.startswith("----")]
    if len(rules) >= 2 and rules[1] > rules[0] + 1:
        lines = lines[:rules[1]]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def slurm_parameters(cluster: ClusterSettings, cpus: int) -> dict[str, Any]:
    """AutoExecutor.update_parameters of one job: the generic resources, the partition, and each
    --slurm-option as its slurm_* parameter when submitit has one, else as an extra #SBATCH line."""
    from submitit.slurm.slurm import SlurmExecutor

    valid = SlurmExecutor._valid_parameters()
    params: dict[str, Any] = {"name": "sspnet-compare", "timeout_min": cluster.timeout_min,
                              "gpus_per_node": cluster.gpus_per_run, "cpus_per_task": cpus,
                              "slurm_partition": cluster.partition,
                              "slurm_array_parallelism": cluster.array_parallelism}
    extra = {}
    for key, value in cluster.slurm_options.items():
        name = key.replace("-", "_")
        if name in valid:
            params["slurm_" + name] = int(value) if str(value).isdigit() else value
        else:
            extra[key] = value
    if extra:
        params["slurm_additional_parameters"] = extra
    return {k: v for k, v in params.items() if v is not None}


class SubmititJobs:
    """Jobs of a submitit executor (Slurm array, local processes or the driver's process for debug)."""

    def __init__(self, config: CompareConfig):
        submitit = require("submitit")
        c = config.cluster
        self.folder = Path(config.out).resolve() / "jobs"
        cluster = None if c.submitit_cluster == "auto" else c.submitit_cluster
        self.executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)  # OUT/jobs/ID_0_log.out ...
        self.executor.update_parameters(**slurm_parameters(c, _cpus(config)))
        self.kind = self.executor.cluster
        self.poll = 10.0 if self.kind == "slurm" else 0.5
        self.pending: dict[Any, str] = {}
        self.ids: list[str] = []

    def describe(self, n: int) -> str:
        return f"{n} job(s) via submitit ({self.kind})"

    def submit(self, config: CompareConfig, names: list[str], cwd: str) -> str:
        jobs = self.executor.map_array(run_job, [config] * len(names), names, [cwd] * len(names))
        self.pending.update(zip(jobs, names))
        self.ids = [str(j.job_id) for j in jobs]
        if self.kind == "slurm":
            return f"Slurm job array {self.ids[0].split('_')[0]} (logs in {self.folder})"
        return f"{self.kind} job(s) {', '.join(self.ids)} (logs in {self.folder})"

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any] | None, str | None]]:
        """(name, result, error) of the jobs that ended, after at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            ended = [j for j in self.pending if j.done()]
            if ended or time.monotonic() >= deadline:
                break
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
        out = []
        for job in ended:
            name = self.pending.pop(job)
            try:
                out.append((name, job.result(), None))
            except Exception as exc:  # the job's exception, or the scheduler's reason (timeout, node failure)
                out.append((name, None, f"{_last_line(exc)} (log: {job.paths.stderr})"))
        return out

    def interrupted(self) -> str:
        if not self.pending:
            return "interrupted; run the same command again to continue"
        ids = " ".join(str(j.job_id) for j in self.pending)
        stop = f"`scancel {ids}` stops them" if self.kind == "slurm" else f"processes {ids}"
        return (f"interrupted: {len(self.pending)} submitted job(s) keep running ({stop}); run the same command "
                "again to collect the finished runs and submit the missing ones")

    def close(self) -> None:
        pass


class RayJobs:
    """Ray tasks: on the cluster of $RAY_ADDRESS, else on a local Ray started here."""

    def __init__(self, config: CompareConfig):
        self.ray = ray = require("ray")
        address = os.environ.get("RAY_ADDRESS") or None
        self.own = not ray.is_initialized()
        if self.own:
            ray.init(address=address, include_dashboard=False, log_to_driver=not config.quiet,
                     logging_level=logging.WARNING)
        self.where = f"Ray cluster {address}" if address else "a local Ray"
        self.task = ray.remote(num_cpus=_cpus(config), num_gpus=config.cluster.gpus_per_run)(run_job)
        self.pending: dict[Any, str] = {}

    def describe(self, n: int) -> str:
        return f"{n} Ray task(s) on {self.where}"

    def submit(self, config: CompareConfig, names: list[str], cwd: str) -> str:
        self.pending.update({self.task.remote(config, name, cwd): name for name in names})
        return f"Ray tasks on {self.where}"

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any] | None, str | None]]:
        refs = list(self.pending)
        if not refs:
            time.sleep(timeout)
            return []
        ready, rest = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        out = []
        for ref in ready:
            name = self.pending.pop(ref)
            try:
                out.append((name, self.ray.get(ref), None))
            except Exception as exc:  # RayTaskError (the job's exception), a crashed worker
                out.append((name, None, _last_line(exc)))
        return out

    def interrupted(self) -> str:
        for ref in self.pending:
            self.ray.cancel(ref)  # KeyboardInterrupt in the task: the trainer saves last.pt
        return (f"interrupted: {len(self.pending)} Ray task(s) cancelled (Ray tasks end with their driver; each "
                "saves its last.pt); run the same command again to resume them")

    def close(self) -> None:
        if self.own:
            self.ray.shutdown()


class _Idle:
    """No job submitted: only waiting for runs that other jobs work on."""

    pending: dict[Any, str] = {}
    poll = 2.0

    def describe(self, n: int) -> str:
        return "no job submitted"

    def wait(self, timeout: float) -> list:
        time.sleep(timeout)
        return []

    def interrupted(self) -> str:
        return "interrupted: the other jobs keep running; run the same command again to collect their runs"

    def close(self) -> None:
        pass


def _done_line(name: str, run_dir: Path, result: dict[str, Any] | None, k: int, n: int) -> str:
    """'[2/4] ssp2-s0-1a2b3c4d: clean 97.1%  FGSM ...  (12 s on node3)' from the run's record."""
    from sspnet.experiments.compare.plan import RECORD_FILE

    try:
        e = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))["eval"]
        nums = f"clean {e['clean']:.1f}%  FGSM {e['fgsm']:.1f}%  PGD {e['pgd']:.1f}%"
    except (OSError, ValueError, KeyError):
        nums = "not finished"
    where = f"  ({result['seconds']:.0f} s on {result['host']})" if result else ""
    return f"[{k}/{n}] {name}: {nums}{where}"


def _wait(jobs: Any, watch: dict[str, Path], dirs: dict[str, Path], config: CompareConfig) -> list[str]:
    """Collect the jobs and wait for the runs of other jobs (`watch`: their locks); the failed runs."""
    failed: list[str] = []
    k, n = 0, len(jobs.pending) + len(watch)
    while jobs.pending or watch:
        for name, result, error in jobs.wait(getattr(jobs, "poll", 2.0)):
            if error is not None:
                failed.append(name)
                _say(config, f"{name}: failed: {error}")
            elif result.get("state") == "busy":
                watch[name] = dirs[name]
                _say(config, f"{name}: another job works on it; waiting for it")
            else:
                k += 1
                _say(config, _done_line(name, dirs[name], result, k, n))
        for name in [m for m, d in watch.items() if busy(d) is None]:
            watch.pop(name)
            k += 1
            _say(config, _done_line(name, dirs[name], None, k, n))
    return failed


def run_remote(config: CompareConfig, plan: list[PlannedRun], settings: dict[str, Any]) -> dict[str, Any]:
    """Submit every run to do as one job, wait for them, write the report of the finished runs."""
    _say(config, format_plan(plan, settings))
    statuses = status_counts(plan)
    todo = needs_work(plan, settings)
    dirs = {r.run_dir.name: r.run_dir for r in plan}
    watch = {}
    for run in todo:
        who = busy(run.run_dir)
        if who:
            watch[run.run_dir.name] = run.run_dir
            _say(config, f"{run.run_dir.name}: in progress in {who}; not submitted, waiting for it")
    names = [r.run_dir.name for r in todo if r.run_dir.name not in watch]
    t0, failed, how = time.perf_counter(), [], "nothing to run"
    if names or watch:
        jobs = (_Idle() if not names else SubmititJobs(config) if config.executor == "submitit"
                else RayJobs(config))
        how = jobs.describe(len(names))
        try:
            if names:
                what = jobs.submit(job_config(config), names, os.getcwd())
                _say(config, f"submitted {len(names)} run(s) as {what}: {', '.join(names)}")
            failed = _wait(jobs, watch, dirs, config)
        except KeyboardInterrupt:
            print(jobs.interrupted(), flush=True)
            raise
        finally:
            jobs.close()
    else:
        _say(config, f"nothing to run: all {len(plan)} runs are finished")
    plan, settings = make_plan(config)  # the statuses now
    summary = report(config, plan, settings, time.perf_counter() - t0, how, statuses, failed)
    summary["submitted"] = names
    return summary
