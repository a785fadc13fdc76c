"""`--executor ray`: each job (`work.job.run_job`) one Ray task, on the cluster of $RAY_ADDRESS, else on a local Ray
started here. Interrupted, the driver cancels the tasks (they save last.pt; the next invocation resumes them)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from sspnet.experiments.compare.executors.base import Executor, Finished, last_line, require
from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.experiments.compare.plan.runs import PlannedRun
from sspnet.experiments.compare.work.job import run_job


class RayExecutor(Executor):
    """Ray tasks of `cpus` CPUs and `gpus` GPUs each."""

    name = "ray"

    def __init__(self, cpus: int, gpus: int, cwd: str, quiet: bool):
        super().__init__()
        self.ray = ray = require("ray")
        address = os.environ.get("RAY_ADDRESS") or None
        self.own = not ray.is_initialized()
        if self.own:
            ray.init(address=address, include_dashboard=False, log_to_driver=not quiet, logging_level=logging.WARNING)
        self.where = f"Ray cluster {address}" if address else "a local Ray"
        self.task = ray.remote(num_cpus=cpus, num_gpus=gpus)(run_job)
        self.cwd = cwd

    def describe(self, n: int) -> str:
        return f"{n} Ray task(s) on {self.where}"

    def submit(self, ctx: CompareContext, run: PlannedRun) -> Any:
        ref = self.task.remote(ctx, run.run_dir.name, self.cwd)
        self.pending[ref] = run
        return ref

    def submitted(self) -> str:
        return f"Ray tasks on {self.where}"

    def wait(self, timeout: float | None = None) -> list[Finished]:
        timeout = self.poll if timeout is None else timeout
        refs = list(self.pending)
        if not refs:
            time.sleep(timeout)
            return []
        ready, rest = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        out = []
        for ref in ready:
            run = self.pending.pop(ref)
            try:
                out.append(Finished(run, self.ray.get(ref)))
            except Exception as exc:  # RayTaskError (the job's exception), a crashed worker
                out.append(Finished(run, None, last_line(exc)))
        return out

    def cancel(self) -> str:
        for ref in self.pending:
            self.ray.cancel(ref)  # KeyboardInterrupt in the task: the trainer saves last.pt
        return (
            f"interrupted: {len(self.pending)} Ray task(s) cancelled (Ray tasks end with their driver; each "
            "saves its last.pt); run the same command again to resume them"
        )

    def close(self) -> None:
        if self.own:
            self.ray.shutdown()
