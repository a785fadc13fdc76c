"""The typed context of one comparison: what every stage after the plan reads (the resolved settings, the
evaluation hash, where and how the runs run). Built once by `plan.runs.make_plan`; frozen and picklable, so worker
processes, submitit and Ray jobs get it as it is.

    plan, ctx = make_plan(CompareConfig(out="compare"))
    ctx.eval.eps, ctx.eval_hash, ctx.dataset        # EvalSettings (pixel units), str, str
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sspnet.experiments.compare.config import EvalSettings

# the keys of the settings dict the context replaced (results.json's "settings" block keeps them)
SUMMARY_FIELDS = ("preset", "dataset", "models", "seeds", "train", "eval", "eval_hash", "grid", "out", "sources")


@dataclass(frozen=True)
class CompareContext:
    """One comparison, resolved. train: TrainConfig options shared by all runs (eps / alpha in pixel units);
    eval: the resolved EvalSettings; eval_hash: their cache hash; grid: (blocks, PGD steps of training)
    variants or None; device: as requested ("auto", "cpu", "cuda:1"; each executor resolves it where the runs
    run); threads: --threads (None: 1 per run on a CPU or in a worker process, else torch's own); quiet: no
    progress lines from the jobs; sources: where each option came from (`sspnet.experiments.compare.sources`)."""

    preset: str
    dataset: str
    models: list[str]
    seeds: int
    train: dict[str, Any]
    eval: EvalSettings
    eval_hash: str
    grid: list[tuple[int, int]] | None
    out: str
    device: str = "auto"
    data_root: str | None = None
    threads: int | None = None
    quiet: bool = False
    sources: dict[str, Any] = dataclasses.field(default_factory=dict)  # `compare.sources`; in no hash

    def replace(self, **changes: Any) -> CompareContext:
        """A copy with `changes` (e.g. the resolved device, quiet for worker processes)."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """The "settings" block of results.json (the evaluation as its hash key, the sources of the options)."""
        return {**{k: getattr(self, k) for k in SUMMARY_FIELDS}, "eval": self.eval.key()}

    def run_threads(self, pooled: bool = False) -> int | None:
        """Torch threads of a run: --threads, else 1 on a CPU or in a worker process (parallel runs instead of
        parallel convolutions; CPU float results depend on the thread count and the run cache does not know
        --jobs); None: leave torch's own (one GPU run in this process)."""
        if self.threads is not None:
            return self.threads
        return 1 if pooled or str(self.device).startswith("cpu") else None

    @classmethod
    def from_settings(cls, settings: CompareContext | Mapping[str, Any]) -> CompareContext:
        """A context from an old settings dict (its SUMMARY_FIELDS; other keys ignored); a context as it is."""
        if isinstance(settings, CompareContext):
            return settings
        fields: dict[str, Any] = {k: settings.get(k) for k in SUMMARY_FIELDS}
        fields["sources"] = dict(fields["sources"] or {})  # none before the sources were recorded
        return cls(**fields)


def apply_threads(ctx: CompareContext, pooled: bool = False) -> int | None:
    """The one place compare sets torch's threads for its runs (`CompareContext.run_threads`): the worker
    initializer of the local pool, a run in this process and a cluster job all call it. Returns the count set
    (None: left as it was)."""
    import torch

    threads = ctx.run_threads(pooled)
    if threads is not None:
        torch.set_num_threads(threads)
    return threads
