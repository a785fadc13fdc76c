"""The executor interface of compare: every way of running the plan's jobs (`work.job.run_job`, the only unit of
work) implements it, so the driver (`compare.drive`) and the audits are the same whatever runs the jobs.

    ex = make_executor(...)                # executors.local / submitit / ray / emit
    ex.submit(ctx, run)                    # queue one job (PlannedRun), returns a handle
    for f in ex.wait(timeout):             # the jobs that finished meanwhile: Finished(run, result, error)
        ...
    ex.close()                             # always; after cancel() when interrupted
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.experiments.compare.plan.runs import PlannedRun


@dataclass
class Finished:
    """A job that ended: its run, `run_job`'s result (None when it failed) and the error's last line."""

    run: PlannedRun
    result: dict[str, Any] | None
    error: str | None = None


class Executor:
    """Runs jobs of `work.job.run_job`. poll: seconds the driver waits per `wait` call; on_start(run): called when
    a job starts (the local executor's progress lines). Subclasses implement submit, wait; cancel and close
    when they hold resources."""

    poll: float = 2.0
    name: str = "executor"
    announce_interrupt: bool = True  # the driver prints cancel()'s line even with --quiet

    def __init__(self) -> None:
        self.on_start: Callable[[PlannedRun], None] = lambda run: None
        self.pending: dict[Any, PlannedRun] = {}

    def describe(self, n: int) -> str:
        """Where `n` jobs run, for the report ('2 parallel job(s)', '3 job(s) via submitit (slurm)')."""
        return f"{n} job(s) via {self.name}"

    def active(self) -> int:
        """Jobs submitted and not yet returned by `wait`."""
        return len(self.pending)

    def submit(self, ctx: CompareContext, run: PlannedRun) -> Any:
        raise NotImplementedError

    def submitted(self) -> str:
        """What the last submissions became (a Slurm array id, ...), or '' when there is nothing to say."""
        return ""

    def wait(self, timeout: float | None = None) -> list[Finished]:
        raise NotImplementedError

    def cancel(self) -> str:
        """Stop or leave what runs after an interruption; the line saying what was done and how to continue."""
        return "interrupted; run the same command again to continue"

    def close(self) -> None:
        pass


EXTRAS = {"submitit": ("submitit", "slurm"), "ray": ("ray", "ray")}  # executor: (module, pip extra)


def require(executor: str) -> Any:
    """The module of an executor; ValueError in one line naming the extra when it is not installed."""
    import importlib

    module, extra = EXTRAS[executor]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"--executor {executor} needs {module}: pip install 'sspnet[{extra}]'") from None


def last_line(exc: BaseException) -> str:
    """The last line of a job's traceback (submitit puts it between two '----' lines), else of the error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    rules = [i for i, ln in enumerate(lines) if ln.startswith("----")]
    if len(rules) >= 2 and rules[1] > rules[0] + 1:
        lines = lines[: rules[1]]
    return (lines[-1] if lines else type(exc).__name__)[:300]
