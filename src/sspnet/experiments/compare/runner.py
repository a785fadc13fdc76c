"""The comparison experiment: train several schemes under one budget for several seeds, evaluate, report.

    from sspnet.experiments.compare.runner import CompareConfig, run_compare
    summary = run_compare(CompareConfig(out="compare"))        # the default: 5 models x 3 seeds on mnist5k

Plan: every (variant, model, seed) is one training run in OUT/runs/<model>-s<seed>-<hash>/, where the hash
covers every training option that changes the result, so a re-run finds finished runs (cached: nothing is
trained or evaluated again), resumes unfinished ones (`sspnet.train` resume from last.pt) and re-evaluates
runs whose evaluation settings changed. Each run is evaluated on n evenly spaced test images: clean, FGSM and
PGD accuracy at eps, PGD accuracy over an eps sweep, optional AutoAttack, and the perturbation growth ratios
(`sspnet.growth`) of the PGD examples and of random sign noise at the same eps. Results: OUT/runs/*/compare.json,
OUT/results.json, OUT/REPORT.md and the plots (`sspnet.comparereport`).

Presets (see PRESETS; times are estimates for the whole plan):
- default: mnist5k, standard training (Adam, one-cycle lr 3e-3, 4 epochs of batch 64, 3 blocks), evaluation
  at eps 0.1 (PGD-10, step 0.025) on 500 test images; 15 runs in about 8 minutes on 2 idle CPU cores
  (two runs at a time in worker processes with one thread each: on small batches this beats two threads per
  convolution, and it degrades gracefully on a shared machine).
- paper-mnist: the original's MNIST settings: full MNIST, 5 blocks, ball training (5 noisy copies,
  eps 0.3), SGD lr 0.1, 200 epochs; evaluation at eps 0.3 (PGD-20) on the 10,000 test images.
- paper-cifar10: the paper's grid (N, K) in {6, 10} x {7, 12}: PGD-K adversarial training at 8/255, 200
  epochs, SGD lr 0.1; evaluation PGD-20 at 8/255 on the 10,000 test images; growth as the paper (PGD-20).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from sspnet.experiments.compare.report import _fmt_time, format_plan
from sspnet.io.files import atomic_write_json

DEFAULT_MODELS = ("res", "ssp2", "ssp3", "ark", "midrk2")
AUTOATTACK_MODES = ("auto", "on", "off")
RECORD_FILE = "compare.json"
# dataset-dependent evaluation eps of the default (standard-training) budget, pixel units
BUDGET_EPS = {"mnist": 0.1, "cifar10": 2 / 255, "tinyimagenet": 1 / 255}

PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "dataset": "mnist5k", "models": DEFAULT_MODELS, "seeds": 3, "grid": None,
        "train": {"blocks": 3, "epochs": 4, "batch_size": 64, "opt": "adam", "lr": 3e-3, "schedule": "cyclic",
                  "adv": "none"},
        "eval": {"eps": None, "alpha_rel": 0.25, "pgd_steps": 10, "n": 500, "sweep_rel": (0.5, 1.0, 1.5, 2.0),
                 "sweep_n": 200, "growth_n": 200, "autoattack": "off"},
        "expected": "about 8 minutes for the 15 runs on a quiet 2-core CPU (2 runs in parallel, one thread each, "
                    "about 65 CPU-seconds per run: 25-45 s training, 20-30 s evaluation); longer when other "
                    "processes share the CPU",
    },
    "paper-mnist": {
        "dataset": "mnist", "models": DEFAULT_MODELS, "seeds": 3, "grid": None,
        "train": {"blocks": 5, "epochs": 200, "batch_size": 128, "opt": "sgd", "adv": "ball", "eps": 0.3},
        "eval": {"eps": 0.3, "alpha": 0.05, "pgd_steps": 20, "n": None, "sweep": (0.1, 0.2, 0.3, 0.4),
                 "sweep_n": 1000, "growth_n": 1000, "autoattack": "auto"},
        "expected": "not measured (no GPU here): 60 M image forward+backward passes per run (200 epochs x "
                    "60,000 images x 5 noisy copies); at ~20,000 images/s on one modern GPU about 50 min per run, "
                    "~13 h for the 15 runs; days on a CPU",
    },
    "paper-cifar10": {
        "dataset": "cifar10", "models": DEFAULT_MODELS, "seeds": 3, "grid": [(6, 7), (6, 12), (10, 7), (10, 12)],
        "train": {"epochs": 200, "batch_size": 128, "opt": "sgd", "adv": "pgd"},
        "eval": {"eps": 8 / 255, "alpha": 2 / 255, "pgd_steps": 20, "n": None,
                 "sweep": (2 / 255, 4 / 255, 8 / 255, 16 / 255), "sweep_n": 1000, "growth_n": 1000,
                 "autoattack": "auto"},
        "expected": "not measured (no GPU here): (K + 1) x 10 M image forward+backward passes per run (200 "
                    "epochs x 50,000 images, PGD-K + the update), 80-130 M; at ~10,000 images/s on one modern GPU "
                    "2-4 h per run, about 8 GPU-days for the 60 runs (4 grid points x 5 models x 3 seeds); split "
                    "the work with --models / --seeds / --grid or run it on several GPUs",
    },
}


@dataclass
class EvalSettings:
    """Evaluation of every run. eps/alpha/sweep in pixel units (None: from the dataset, see `resolve`).

    n: test images (evenly spaced; None all); sweep_n: images of the eps sweep; growth_n: images for growth
    (the first growth_n of the PGD examples at eps, plus sign noise of the same eps).
    """

    eps: float | None = None
    alpha: float | None = None
    alpha_rel: float = 0.25
    pgd_steps: int = 10
    n: int | None = 500
    sweep: tuple[float, ...] | None = None
    sweep_rel: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    sweep_n: int = 200
    growth_n: int = 200
    growth_noise: str = "sign"
    autoattack: str = "off"
    autoattack_n: int = 100
    quantize: bool = True
    batch_size: int = 250
    crit: str = "final"

    def resolve(self, dataset: str) -> "EvalSettings":
        from sspnet.data.specs import get_dataset_spec

        spec = get_dataset_spec(dataset)
        e = dataclasses.replace(self)
        if e.eps is None:
            e.eps = BUDGET_EPS.get(spec.arch, spec.train_eps)
        if e.alpha is None:
            e.alpha = max(e.eps * e.alpha_rel, 1 / 255 if e.quantize else 1e-12)
        if e.sweep is None:
            e.sweep = tuple(round(e.eps * r, 10) for r in e.sweep_rel)
        e.sweep = tuple(float(v) for v in e.sweep)
        if e.autoattack not in AUTOATTACK_MODES:
            raise ValueError(f"unknown autoattack mode {e.autoattack!r}; valid: {', '.join(AUTOATTACK_MODES)}")
        for name in ("pgd_steps", "sweep_n", "growth_n", "autoattack_n", "batch_size"):
            v = getattr(e, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if e.n is not None and (not isinstance(e.n, int) or e.n < 1):
            raise ValueError(f"n (test images) must be an integer >= 1 or None (all), got {e.n!r}")
        for v in (e.eps, *e.sweep):
            if not 0 < v <= 1:
                raise ValueError(f"eps values must be in (0, 1] pixel units, got {v}")
        return e

    def key(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sweep"] = list(d["sweep"] or [])
        d.pop("sweep_rel")
        d.pop("alpha_rel")
        return d


@dataclass
class CompareConfig:
    """The whole experiment. train: TrainConfig fields shared by all runs (eps/alpha in the dataset's CLI
    unit, as `sspnet train`); grid: (blocks, iters) variants, or None for one variant. jobs: runs in parallel
    processes with one thread each (None: 2 on a CPU with >= 2 cores, 1 on a GPU; 1: in this process)."""

    preset: str = "default"
    dataset: str | None = None
    models: Sequence[str] | None = None
    seeds: int | None = None
    out: str = "compare"
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    grid: list[tuple[int, int]] | None = None
    data_root: str | None = None
    device: str = "auto"
    jobs: int | None = None
    dry_run: bool = False
    quiet: bool = False

    def resolved(self) -> tuple[str, list[str], int, dict[str, Any], EvalSettings, list[tuple[int, int]] | None]:
        """(dataset, models, seeds, train options, eval settings, grid) with the preset filled in."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        p = PRESETS[self.preset]
        dataset = self.dataset or p["dataset"]
        from sspnet.data.specs import get_dataset_spec

        get_dataset_spec(dataset)
        models = list(self.models or p["models"])
        if not models:
            raise ValueError("--models: give at least one model")
        if len(set(models)) != len(models):
            raise ValueError(f"--models lists a model twice: {models}")
        from sspnet.nn.schemes import get_scheme

        for m in models:
            if m != "ark":
                get_scheme(m)  # ValueError listing the valid schemes
        seeds = p["seeds"] if self.seeds is None else self.seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"--seeds must be an integer >= 1, got {seeds!r}")
        train = {**p["train"], **{k: v for k, v in self.train.items() if v is not None}}
        ev = EvalSettings(**{**p["eval"], **{k: v for k, v in self.eval.items() if v is not None}}).resolve(dataset)
        grid = self.grid if self.grid is not None else p["grid"]
        return dataset, models, seeds, train, ev, grid


@dataclass
class PlannedRun:
    """One training run of the plan. status: cached | evaluate | resume | train."""

    index: int
    model: str
    seed: int
    variant: str
    train_config: Any  # sspnet.train.TrainConfig
    train_hash: str
    run_dir: Path
    status: str = "train"
    cost_units: float = 1.0


def config_hash(obj: Any) -> str:
    """sha256 (16 hex digits) of a canonical JSON dump."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _train_key(cfg: Any) -> dict[str, Any]:
    from sspnet.train import IDENTITY_FIELDS

    from sspnet.nn.schemes import PRESETS as SCHEMES, get_scheme

    r = cfg.resolved()
    keys = set(IDENTITY_FIELDS) | {"epochs", "test_limit", "eval_batch_size", "activation_checkpointing"}
    # options left at None are dropped, so an option added to the trainer later does not change old hashes
    key = {k: v for k, v in dataclasses.asdict(r).items() if k in keys and v is not None}
    if r.model != "ark" and r.model not in SCHEMES:  # a scheme file: hash its coefficients, not only its path
        key["scheme"] = get_scheme(r.model).to_dict()
    return key


def _cost_units(model: str, dataset: str, blocks: int | None, groups: int) -> float:
    """Relative cost of a run: stem + transitions + F calls (MNIST's stem weighs about 5 F calls)."""
    from sspnet.nn.schemes import get_scheme
    from sspnet.data.specs import get_dataset_spec

    spec = get_dataset_spec(dataset)
    n = blocks or spec.blocks
    calls = 2 if model == "ark" else get_scheme(model).f_calls
    stem = 5.0 if spec.arch == "mnist" else 1.0
    return stem + (groups - 1) + groups * n * calls


def make_plan(config: CompareConfig) -> tuple[list[PlannedRun], dict[str, Any]]:
    """The plan of runs and the resolved settings; every run's status read from its folder."""
    from sspnet.train import TrainConfig

    dataset, models, seeds, train, ev, grid = config.resolved()
    from sspnet.nn.models import WIDTHS
    from sspnet.data.specs import get_dataset_spec

    n_groups = len(WIDTHS[get_dataset_spec(dataset).arch])
    variants = [("", {})] if not grid else [(f"N{n}-K{k}", {"blocks": int(n), "iters": int(k)}) for n, k in grid]
    runs_dir = Path(config.out) / "runs"
    plan: list[PlannedRun] = []
    for label, extra in variants:
        for model in models:
            for seed in range(seeds):
                opts = {**train, **extra, "dataset": dataset, "model": model, "seed": seed,
                        "data_root": config.data_root, "device": config.device, "quiet": True}
                tc = TrainConfig.from_dict(opts)
                tc.validate()
                h = config_hash(_train_key(tc))
                name = f"{label + '-' if label else ''}{Path(model).stem}-s{seed}-{h[:8]}"
                tc.save = str(runs_dir / name)
                run = PlannedRun(len(plan) + 1, model, seed, label, tc, h, runs_dir / name,
                                 cost_units=_cost_units(model, dataset, tc.blocks, n_groups))
                plan.append(run)
    eval_hash = config_hash(ev.key())
    for run in plan:
        run.status = run_status(run, eval_hash)
    settings = {"preset": config.preset, "dataset": dataset, "models": models, "seeds": seeds, "train": train,
                "eval": ev, "eval_hash": eval_hash, "grid": grid, "out": str(config.out),
                "expected": PRESETS[config.preset]["expected"]}
    return plan, settings


def _training_finished(run_dir: Path, epochs: int) -> bool:
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file() or not (run_dir / "model_final.pt").is_file():
        return False
    for line in metrics.read_text(encoding="utf-8").splitlines():
        if line.strip() and json.loads(line).get("epoch") == epochs:
            return True
    return False


def run_status(run: PlannedRun, eval_hash: str) -> str:
    """cached (trained and evaluated with these settings) | evaluate | resume | train."""
    d = run.run_dir
    if _training_finished(d, run.train_config.epochs):
        rec = d / RECORD_FILE
        if rec.is_file():
            try:
                data = json.loads(rec.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return "evaluate"
            if data.get("eval_hash") == eval_hash and data.get("train_hash") == run.train_hash:
                return "cached"
        return "evaluate"
    if (d / "config.json").is_file() and (d / "last.pt").is_file():
        return "resume"
    return "train"


# ---- the experiment -------------------------------------------------------------------------------------

def _train_seconds(run_dir: Path) -> float:
    total = 0.0
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            total += float(json.loads(line).get("seconds") or 0.0)
    return total


class _Progress:
    """Progress lines over the whole plan: runs done / to do, elapsed, time left from the measured throughput
    (seconds per cost unit of the runs made in this invocation, parallel jobs included)."""

    def __init__(self, plan: list[PlannedRun], quiet: bool):
        self.plan, self.quiet = plan, quiet
        self.t0 = time.perf_counter()
        self.units_done = 0.0
        self.done = sum(r.status == "cached" for r in plan)
        self.todo = [r for r in plan if r.status != "cached"]
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
        return "~" + _fmt_time(rate * (sum(r.cost_units for r in self.todo) - half))

    def start(self, run: PlannedRun) -> None:
        self.running.add(run.index)
        self.say(f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}{' ' + run.variant if run.variant else ''}"
                 f": {run.status}... (done {self.done}, to do {len(self.todo)}, elapsed "
                 f"{_fmt_time(time.perf_counter() - self.t0)}, left {self._left()})")

    def finish(self, run: PlannedRun, rec: dict[str, Any]) -> None:
        self.units_done += run.cost_units if run.status in ("train", "resume") else 0.2 * run.cost_units
        self.done += 1
        self.todo = [r for r in self.todo if r.index != run.index]
        self.running.discard(run.index)
        e = rec["eval"]
        self.say(f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}: clean {e['clean']:.1f}%  FGSM "
                 f"{e['fgsm']:.1f}%  PGD {e['pgd']:.1f}%  growth(L2) "
                 f"{rec['growth']['adversarial']['groups']['2'][-1]:.3f}  train {rec['train_seconds']:.1f}s  eval "
                 f"{e['seconds']:.1f}s | done {self.done}/{len(self.plan)}, to do {len(self.todo)}, elapsed "
                 f"{_fmt_time(time.perf_counter() - self.t0)}, left {self._left() if self.todo else '0:00'}")


def execute_run(run: PlannedRun, ev: EvalSettings, dataset: str, eval_hash: str, device: str,
                data_root: str | None = None, train_fn: Callable | None = None) -> dict[str, Any]:
    """Train (or resume) one planned run if needed, evaluate it, write RUN_DIR/compare.json and growth.json;
    returns the record."""
    from sspnet.nn.checkpoints import load_model
    from sspnet.eval.growth import load_test_images
    from sspnet.nn.models import model_cost

    if train_fn is None:
        from sspnet import train as train_module

        train_fn = train_module.train
    t0 = time.perf_counter()
    wall_train = None
    if run.status in ("train", "resume"):
        cfg = copy.copy(run.train_config)
        cfg.resume, cfg.force, cfg.device = run.status == "resume", run.status == "train", device
        train_fn(cfg)
        wall_train = time.perf_counter() - t0
    model = load_model(run.run_dir, crit=ev.crit, device=device)
    x, y = load_test_images(dataset, ev.n or 10 ** 9, data_root, device)
    label = f"{run.variant + ' ' if run.variant else ''}{run.model}"
    from sspnet.experiments.compare.evaluation import evaluate_run

    res = evaluate_run(model, x, y, ev, dataset, label, str(run.run_dir))
    res["growth"].save(run.run_dir / "growth.json")
    metrics = [json.loads(ln) for ln in (run.run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    rec = {"model": run.model, "seed": run.seed, "variant": run.variant, "run_dir": str(run.run_dir),
           "status": run.status, "train_hash": run.train_hash, "eval_hash": eval_hash, "cost": model_cost(model),
           "train_seconds": _train_seconds(run.run_dir), "train_wall_seconds": wall_train,
           "run_wall_seconds": time.perf_counter() - t0, "threads": torch.get_num_threads(),
           "epochs": len(metrics), "trainer_test_acc": metrics[-1].get("test_acc") if metrics else None,
           "eval": res["eval"], "growth": res["growth"].to_dict()}
    atomic_write_json(run.run_dir / RECORD_FILE, _clean(rec))
    return json.loads((run.run_dir / RECORD_FILE).read_text(encoding="utf-8"))


def _worker(args: tuple) -> dict[str, Any]:
    """Process-pool entry: one intra-op thread per job (parallel runs instead of parallel convolutions)."""
    torch.set_num_threads(1)
    return execute_run(*args)


def default_jobs(device: str) -> int:
    """Parallel runs: 2 on a CPU with >= 2 cores (one thread each), 1 on a GPU."""
    return 1 if device != "cpu" else max(1, min(2, os.cpu_count() or 1))


def run_compare(config: CompareConfig, train_fn: Callable | None = None) -> dict[str, Any]:
    """Run (or with dry_run, print) the plan; write the records, results.json, REPORT.md and plots.

    train_fn: the training function (default `sspnet.train.train`; with jobs > 1 always the default, in
    worker processes). Returns the summary dict of results.json ({"plan": text, "runs": [...]} with dry_run).
    """
    from sspnet.experiments.compare.report import write_report
    from sspnet.distributed import resolve_device

    plan, settings = make_plan(config)
    text = format_plan(plan, settings)
    if config.dry_run:
        print(text)
        return {"plan": text, "runs": [{"model": r.model, "seed": r.seed, "variant": r.variant, "status": r.status,
                                        "run_dir": str(r.run_dir)} for r in plan]}
    prog = _Progress(plan, config.quiet)
    prog.say(text)
    ev: EvalSettings = settings["eval"]
    device = resolve_device(config.device)
    jobs = default_jobs(device) if config.jobs is None else config.jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {jobs!r}")
    jobs = min(jobs, max(1, len(prog.todo)))
    records: dict[int, dict[str, Any]] = {}
    for run in plan:
        if run.status == "cached":
            records[run.index] = json.loads((run.run_dir / RECORD_FILE).read_text(encoding="utf-8"))
    t_start = time.perf_counter()
    common = (ev, settings["dataset"], settings["eval_hash"], device, config.data_root)
    try:
        if jobs == 1:
            for run in list(prog.todo):
                prog.start(run)
                records[run.index] = execute_run(run, *common, train_fn=train_fn)
                prog.finish(run, records[run.index])
        else:
            _run_pool(prog, jobs, common, records)
    except KeyboardInterrupt:
        prog.say("interrupted: finished runs are kept, the interrupted ones resume from their last.pt; "
                 "run the same command again to continue")
        raise
    elapsed = time.perf_counter() - t_start
    ordered = [records[r.index] for r in plan]
    statuses = {s: sum(r.status == s for r in plan) for s in ("cached", "evaluate", "resume", "train")}
    summary = write_report(Path(config.out), ordered, settings, elapsed, command=" ".join(["sspnet"] + sys.argv[1:]),
                           statuses=statuses, jobs=jobs)
    prog.say(f"done: {len(plan)} runs ({statuses['cached']} cached) in {_fmt_time(elapsed)} with {jobs} job(s); "
             f"report: {Path(config.out) / 'REPORT.md'}")
    return summary


def _run_pool(prog: _Progress, jobs: int, common: tuple, records: dict[int, dict[str, Any]]) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    queue = sorted(prog.todo, key=lambda r: -r.cost_units)  # longest first: the last job is a short one
    ctx = multiprocessing.get_context("spawn")  # no fork after torch started its thread pools
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)
    running: dict[Any, PlannedRun] = {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                run = queue.pop(0)
                prog.start(run)
                running[pool.submit(_worker, (run, *common))] = run
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                run = running.pop(fut)
                records[run.index] = fut.result()
                prog.finish(run, records[run.index])
    except BaseException:
        # Ctrl-C (or a failed run): the workers save last.pt at their next step (the trainer's SIGINT handler)
        for proc in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj
