"""`--emit-jobs FILE`: the executor that runs nothing: each job becomes the shell command of `--only-run`
(`work.job.job_command`), written one a line into FILE when it is closed; they can run in any order (the second
finisher of a pair audits), then `--report-only` reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sspnet.experiments.compare.config import CompareConfig
from sspnet.experiments.compare.executors.base import Executor, Finished
from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.experiments.compare.plan.runs import PlannedRun
from sspnet.experiments.compare.work.job import job_command


class EmitExecutor(Executor):
    """Collects one command line per submitted job; close() writes them to `path` (an empty file: none)."""

    name = "emit-jobs"

    def __init__(self, config: CompareConfig, path: str):
        super().__init__()
        self.config, self.path = config, Path(path)
        self.lines: list[str] = []

    def submit(self, ctx: CompareContext, run: PlannedRun) -> Any:
        self.lines.append(job_command(self.config, run.run_dir.name))
        return self.lines[-1]

    def wait(self, timeout: float | None = None) -> list[Finished]:
        return []  # nothing runs here

    def close(self) -> None:
        from sspnet.io.files import atomic_write_text

        atomic_write_text(self.path, "".join(line + "\n" for line in self.lines))
