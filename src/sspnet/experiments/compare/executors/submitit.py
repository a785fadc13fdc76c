"""`--executor submitit`: each job (`work.job.run_job`) one task of a Slurm job array (or local processes, or the
driver's process with cluster debug); logs in OUT/jobs/. Interrupted, the driver leaves the jobs running (the
next invocation collects them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.config import ClusterSettings
from sspnet.experiments.compare.executors.base import Executor, Finished, last_line, require
from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.experiments.compare.plan.runs import PlannedRun
from sspnet.experiments.compare.work.job import run_job


def slurm_parameters(cluster: ClusterSettings, cpus: int) -> dict[str, Any]:
    """AutoExecutor.update_parameters of one job: the generic resources, the partition, and each
    --slurm-option as its slurm_* parameter when submitit has one, else as an extra #SBATCH line."""
    from submitit.slurm.slurm import SlurmExecutor

    valid = SlurmExecutor._valid_parameters()
    params: dict[str, Any] = {
        "name": "sspnet-compare",
        "timeout_min": cluster.timeout_min,
        "gpus_per_node": cluster.gpus_per_run,
        "cpus_per_task": cpus,
        "slurm_partition": cluster.partition,
        "slurm_array_parallelism": cluster.array_parallelism,
    }
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


class SubmititExecutor(Executor):
    """Jobs of a submitit executor; the jobs submitted before a `wait` go out as one array."""

    name = "submitit"

    def __init__(self, out: str, cluster: ClusterSettings, cpus: int, cwd: str):
        super().__init__()
        submitit = require("submitit")
        self.folder = Path(out).resolve() / "jobs"
        kind = None if cluster.submitit_cluster == "auto" else cluster.submitit_cluster
        self.executor = submitit.AutoExecutor(folder=self.folder, cluster=kind)  # OUT/jobs/ID_0_log.out ...
        self.executor.update_parameters(**slurm_parameters(cluster, cpus))
        self.kind = self.executor.cluster
        self.poll = 10.0 if self.kind == "slurm" else 0.5
        self.cwd = cwd
        self.queue: list[tuple[CompareContext, PlannedRun]] = []
        self.ids: list[str] = []

    def describe(self, n: int) -> str:
        return f"{n} job(s) via submitit ({self.kind})"

    def submit(self, ctx: CompareContext, run: PlannedRun) -> Any:
        self.queue.append((ctx, run))
        return run

    def submitted(self) -> str:
        """Send the queued jobs as one array; what they became."""
        if not self.queue:
            return ""
        ctxs, runs = zip(*self.queue)
        self.queue = []
        jobs = self.executor.map_array(run_job, list(ctxs), [r.run_dir.name for r in runs], [self.cwd] * len(runs))
        self.pending.update(zip(jobs, runs))
        self.ids = [str(j.job_id) for j in jobs]
        if self.kind == "slurm":
            return f"Slurm job array {self.ids[0].split('_')[0]} (logs in {self.folder})"
        return f"{self.kind} job(s) {', '.join(self.ids)} (logs in {self.folder})"

    def active(self) -> int:
        return len(self.pending) + len(self.queue)

    def wait(self, timeout: float | None = None) -> list[Finished]:
        self.submitted()
        deadline = time.monotonic() + (self.poll if timeout is None else timeout)
        while True:
            ended = [j for j in self.pending if j.done()]
            if ended or time.monotonic() >= deadline:
                break
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
        out = []
        for job in ended:
            run = self.pending.pop(job)
            try:
                out.append(Finished(run, job.result()))
            except Exception as exc:  # the job's exception, or the scheduler's reason (timeout, node failure)
                out.append(Finished(run, None, f"{last_line(exc)} (log: {job.paths.stderr})"))
        return out

    def cancel(self) -> str:
        if not self.pending:
            return "interrupted; run the same command again to continue"
        ids = " ".join(str(j.job_id) for j in self.pending)
        stop = f"`scancel {ids}` stops them" if self.kind == "slurm" else f"processes {ids}"
        return (
            f"interrupted: {len(self.pending)} submitted job(s) keep running ({stop}); run the same command "
            "again to collect the finished runs and submit the missing ones"
        )
