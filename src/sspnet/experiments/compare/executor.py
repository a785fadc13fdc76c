"""One run's work: train (or resume) and evaluate it (`execute_run`, called by `jobs.run_job`), and the
progress lines of the local executor over the whole plan.

Each run writes RUN_DIR/compare.json (its record: hashes, cost, timings, accuracies, the images of every
table, growth) and RUN_DIR/growth.json; a record with the plan's hashes makes the run "cached" next time.
"""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from sspnet.experiments.compare.config import EvalSettings
from sspnet.experiments.compare.plan import PlannedRun
from sspnet.io.files import atomic_write_json
from sspnet.io.jsonio import to_jsonable
from sspnet.io.progress import fmt_seconds
from sspnet.io.runlayout import RunLayout


def fmt_time(s: float | None) -> str:
    """Seconds as m:ss or h:mm:ss ("?" when unknown): `sspnet.io.progress.fmt_seconds`."""
    return fmt_seconds(s)


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The trainer's per-epoch lines of RUN_DIR/metrics.jsonl."""
    return RunLayout(run_dir).read_metrics()


def read_record(run: PlannedRun) -> dict[str, Any]:
    """The stored record of a run (RUN_DIR/compare.json)."""
    return json.loads(RunLayout(run.run_dir).compare_record.read_text(encoding="utf-8"))


def _train(run: PlannedRun, device: str, train_fn: Callable | None) -> float | None:
    """Train or resume the run if its status asks for it; the wall seconds it took (None: not trained)."""
    if run.status not in ("train", "resume"):
        return None
    if train_fn is None:
        from sspnet import train as train_module

        train_fn = train_module.train
    t0 = time.perf_counter()
    cfg = copy.copy(run.train_config)
    cfg.resume, cfg.force, cfg.device = run.status == "resume", run.status == "train", device
    train_fn(cfg)
    return time.perf_counter() - t0


def execute_run(run: PlannedRun, ev: EvalSettings, dataset: str, eval_hash: str, device: str,
                data_root: str | None = None, train_fn: Callable | None = None) -> dict[str, Any]:
    """Train (or resume) one planned run if needed, evaluate it, write RUN_DIR/compare.json and growth.json;
    returns the record (as read back from compare.json)."""
    from sspnet import data
    from sspnet.experiments.compare.evaluation import evaluate_run
    from sspnet.nn.checkpoints import describe_checkpoint, load_model
    from sspnet.nn.models import model_cost

    t0 = time.perf_counter()
    wall_train = _train(run, device, train_fn)
    model = load_model(run.run_dir, crit=ev.crit, device=device)
    images, labels = data.load(dataset, root=data_root, split="test", device=device)
    label = f"{run.variant + ' ' if run.variant else ''}{run.model}"
    res = evaluate_run(model, images, labels, ev, dataset, label, str(run.run_dir))
    res["growth"].save(RunLayout(run.run_dir).growth_record)
    metrics = _read_metrics(run.run_dir)
    rec = {"model": run.model, "seed": run.seed, "variant": run.variant, "run_dir": str(run.run_dir),
           "status": run.status, "train_hash": run.train_hash, "eval_hash": eval_hash, "cost": model_cost(model),
           "train_seconds": sum(float(m.get("seconds") or 0.0) for m in metrics),
           "train_wall_seconds": wall_train, "run_wall_seconds": time.perf_counter() - t0,
           "threads": torch.get_num_threads(), "epochs": len(metrics),
           "trainer_test_acc": metrics[-1].get("test_acc") if metrics else None,
           "checkpoint": describe_checkpoint(run.run_dir, ev.crit),
           "eval": res["eval"], "images": res["images"], "correct": res["correct"],
           "growth": res["growth"].to_dict()}
    atomic_write_json(RunLayout(run.run_dir).compare_record, to_jsonable(rec))
    return read_record(run)


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
        return "~" + fmt_time(rate * (sum(r.cost_units for r in self.todo) - half))

    def _where(self) -> str:
        return f"elapsed {fmt_time(time.perf_counter() - self.t0)}, left {self._left() if self.todo else '0:00'}"

    def start(self, run: PlannedRun) -> None:
        self.running.add(run.index)
        variant = " " + run.variant if run.variant else ""
        self.say(f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}{variant}: {run.status}... "
                 f"(done {self.done}, to do {len(self.todo)}, {self._where()})")

    def finish(self, run: PlannedRun, result: dict[str, Any]) -> None:
        """A job of `jobs.run_job` ended: its record's numbers, then one line per audit it did."""
        self.units_done += run.cost_units if run.status in ("train", "resume") else 0.2 * run.cost_units
        self.done += 1
        self.todo = [r for r in self.todo if r.index != run.index]
        self.running.discard(run.index)
        rec = (result or {}).get("record")
        if rec is None:
            self.say(f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}: not finished (another process "
                     f"worked on it) | done {self.done}/{len(self.plan)}, to do {len(self.todo)}, {self._where()}")
            return
        e = rec["eval"]
        growth = rec["growth"]["adversarial"]["groups"]["2"][-1]
        self.say(f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}: clean {e['clean']:.1f}%  FGSM "
                 f"{e['fgsm']:.1f}%  PGD {e['pgd']:.1f}%  growth(L2) {growth:.3f}  train "
                 f"{rec['train_seconds']:.1f}s  eval {e['seconds']:.1f}s | done {self.done}/{len(self.plan)}, "
                 f"to do {len(self.todo)}, {self._where()}")
        names = {r.run_dir.name: r for r in self.plan}
        for name, flags in ((result or {}).get("audit_flags") or {}).items():
            r = names.get(name)
            self.say(f"audit {r.model + ' seed ' + str(r.seed) if r else name}: {flags}")
