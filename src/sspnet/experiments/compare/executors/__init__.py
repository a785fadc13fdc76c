"""The executors of compare's jobs (`work.job.run_job`), one interface (`base.Executor`: submit / wait / close):
`local` (this process, or a pool of worker processes: `pool`), `submitit` (Slurm), `ray`, `emit` (writes
the commands of --emit-jobs). `make_executor` picks one from the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def make_executor(config: Any, ctx: Any, jobs: int = 1, train_fn: Callable | None = None, cwd: str = ".") -> Any:
    """The executor of `config` (a CompareConfig): emit_jobs, else config.executor (local with `jobs` workers
    and `train_fn`, submitit, ray with config.cluster's resources; a job's CPUs: --cpus-per-run, else
    --threads, else 1)."""
    cpus = config.cluster.cpus_per_run or config.threads or 1
    if config.emit_jobs:
        from sspnet.experiments.compare.executors.emit import EmitExecutor

        return EmitExecutor(config, config.emit_jobs)
    if config.executor == "submitit":
        from sspnet.experiments.compare.executors.submitit import SubmititExecutor

        return SubmititExecutor(config.out, config.cluster, cpus, cwd)
    if config.executor == "ray":
        from sspnet.experiments.compare.executors.ray import RayExecutor

        return RayExecutor(cpus, config.cluster.gpus_per_run, cwd, config.quiet)
    from sspnet.experiments.compare.executors.local import LocalExecutor

    return LocalExecutor(jobs, ctx, train_fn)
