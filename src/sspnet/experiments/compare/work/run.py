"""One run's work: train (or resume) and evaluate it (`execute_run`, called by `work.job.run_job`).

Each run writes RUN_DIR/compare.json (its record: hashes, cost, timings, accuracies, the images of every
table, growth) and RUN_DIR/growth.json; a record with the plan's hashes makes the run "cached" next time.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sspnet.experiments.compare.config import EvalSettings
from sspnet.experiments.compare.plan.runs import PlannedRun
from sspnet.io.files import atomic_write_json
from sspnet.io.jsonio import to_jsonable
from sspnet.io.runlayout import RunLayout


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


def execute_run(
    run: PlannedRun,
    ev: EvalSettings,
    dataset: str,
    eval_hash: str,
    device: str,
    data_root: str | None = None,
    train_fn: Callable | None = None,
) -> dict[str, Any]:
    """Train (or resume) one planned run if needed, evaluate it, write RUN_DIR/compare.json and growth.json;
    returns the record (as read back from compare.json)."""
    from sspnet import data
    from sspnet.experiments.compare.work.evaluation import evaluate_run
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
    rec = {
        "model": run.model,
        "seed": run.seed,
        "variant": run.variant,
        "run_dir": str(run.run_dir),
        "status": run.status,
        "train_hash": run.train_hash,
        "eval_hash": eval_hash,
        "cost": model_cost(model),
        "train_seconds": sum(float(m.get("seconds") or 0.0) for m in metrics),
        "train_wall_seconds": wall_train,
        "run_wall_seconds": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
        "epochs": len(metrics),
        "trainer_test_acc": metrics[-1].get("test_acc") if metrics else None,
        "checkpoint": describe_checkpoint(run.run_dir, ev.crit),
        "eval": res["eval"],
        "images": res["images"],
        "correct": res["correct"],
        "growth": res["growth"].to_dict(),
    }
    atomic_write_json(RunLayout(run.run_dir).compare_record, to_jsonable(rec))
    return read_record(run)
