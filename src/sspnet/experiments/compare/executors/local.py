"""The local executor: the jobs (`work.job.run_job`) in this process one after the other (jobs=1), or in a pool of
`jobs` spawned worker processes (`executors.pool`), longest first, each with the torch threads of
`plan.context.apply_threads` (1 unless --threads). Ctrl-C, SIGTERM and SIGHUP stop the workers, which save last.pt
first; a worker exits by itself when the driver dies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sspnet.experiments.compare.executors.base import Executor, Finished
from sspnet.experiments.compare.executors.pool import ProcessPool
from sspnet.experiments.compare.plan.context import CompareContext, apply_threads
from sspnet.experiments.compare.plan.runs import PlannedRun
from sspnet.experiments.compare.work.job import run_job


def _job(args: tuple) -> dict[str, Any]:
    """Pool entry (module level, for spawn): one `run_job`."""
    ctx, name = args
    return run_job(ctx, name)


class LocalExecutor(Executor):
    """This machine: `jobs` worker processes (1: this process; train_fn then replaces `sspnet.train.train`).
    Jobs start in order of submission as slots free up; a failed job raises from `wait` (the driver stops the
    others, as on Ctrl-C). The context's device must be resolved (the workers use it as it is)."""

    name = "local"
    announce_interrupt = False

    def __init__(self, jobs: int, ctx: CompareContext, train_fn: Callable | None = None):
        import torch

        super().__init__()
        self.jobs, self.train_fn = jobs, train_fn
        self.queue: list[tuple[CompareContext, PlannedRun]] = []
        self._own_threads = torch.get_num_threads()
        self.pool = ProcessPool(jobs, apply_threads, (ctx, True)) if jobs > 1 else None
        if self.pool is None:
            apply_threads(ctx)  # a run's numbers must not depend on --jobs; restored by close()

    def describe(self, n: int) -> str:
        return f"{self.jobs} parallel job(s)"

    def submit(self, ctx: CompareContext, run: PlannedRun) -> Any:
        self.queue.append((ctx, run))
        return run

    def active(self) -> int:
        return len(self.pending) + len(self.queue)

    def _start(self) -> None:
        self.queue.sort(key=lambda item: -item[1].cost_units)  # longest first: the last job is a short one
        while self.pool is not None and self.queue and len(self.pending) < self.jobs:
            ctx, run = self.queue.pop(0)
            self.on_start(run)
            self.pending[self.pool.submit(_job, (ctx, run.run_dir.name))] = run

    def wait(self, timeout: float | None = None) -> list[Finished]:
        """The next job's result (in this process), or those of the workers that finished."""
        if self.pool is None:
            if not self.queue:
                return []
            ctx, run = self.queue.pop(0)
            self.on_start(run)
            return [Finished(run, run_job(ctx, run, train_fn=self.train_fn))]
        self._start()
        out = [Finished(self.pending.pop(fut), fut.result()) for fut in self.pool.wait()]
        self._start()
        return out

    def cancel(self) -> str:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.close(interrupted=True)
        return (
            "interrupted: finished runs are kept, the interrupted ones resume from their last.pt; run the "
            "same command again to continue"
        )

    def close(self) -> None:
        import torch

        if self.pool is not None:
            self.pool.close()
            self.pool = None
        torch.set_num_threads(self._own_threads)
