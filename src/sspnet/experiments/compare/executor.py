"""Executing a plan: train (or resume) and evaluate each run, in this process or in a pool of worker
processes with one thread each, with progress lines over the whole plan.

Each run writes RUN_DIR/compare.json (its record: hashes, cost, timings, accuracies, the images of every
table, growth) and RUN_DIR/growth.json; a record with the plan's hashes makes the run "cached" next time.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import torch

from sspnet.experiments.compare.config import EvalSettings
from sspnet.experiments.compare.plan import RECORD_FILE, PlannedRun
from sspnet.io.files import atomic_write_json
from sspnet.io.jsonio import to_jsonable


def fmt_time(s: float | None) -> str:
    """Seconds as m:ss or h:mm:ss ("?" when unknown)."""
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The trainer's per-epoch lines of RUN_DIR/metrics.jsonl."""
    text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def read_record(run: PlannedRun) -> dict[str, Any]:
    """The stored record of a run (RUN_DIR/compare.json)."""
    return json.loads((run.run_dir / RECORD_FILE).read_text(encoding="utf-8"))


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
    res["growth"].save(run.run_dir / "growth.json")
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
    atomic_write_json(run.run_dir / RECORD_FILE, to_jsonable(rec))
    return read_record(run)


_WORKER_THREADS = 1  # intra-op threads of a worker process (set by `pool_map`'s initializer: --threads)


def _init_worker(threads: int) -> None:
    from sspnet.io.allocator import tune_allocator

    global _WORKER_THREADS
    tune_allocator()  # as the CLI process: a spawned worker starts with glibc's defaults
    _WORKER_THREADS = int(threads)
    torch.set_num_threads(_WORKER_THREADS)


def worker_threads() -> int:
    """The intra-op threads of this worker process (1 unless compare was given --threads)."""
    return _WORKER_THREADS


def _worker(args: tuple) -> dict[str, Any]:
    """Process-pool entry: one intra-op thread per job by default (parallel runs instead of parallel
    convolutions; --threads sets another number)."""
    torch.set_num_threads(_WORKER_THREADS)
    return execute_run(*args)


def default_jobs(device: str) -> int:
    """Parallel runs: 2 on a CPU with >= 2 cores (one thread each), 1 on a GPU."""
    return 1 if device != "cpu" else max(1, min(2, os.cpu_count() or 1))


class Progress:
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
        return "~" + fmt_time(rate * (sum(r.cost_units for r in self.todo) - half))

    def _where(self) -> str:
        return f"elapsed {fmt_time(time.perf_counter() - self.t0)}, left {self._left() if self.todo else '0:00'}"

    def start(self, run: PlannedRun) -> None:
        self.running.add(run.index)
        variant = " " + run.variant if run.variant else ""
        self.say(f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}{variant}: {run.status}... "
                 f"(done {self.done}, to do {len(self.todo)}, {self._where()})")

    def finish(self, run: PlannedRun, rec: dict[str, Any]) -> None:
        self.units_done += run.cost_units if run.status in ("train", "resume") else 0.2 * run.cost_units
        self.done += 1
        self.todo = [r for r in self.todo if r.index != run.index]
        self.running.discard(run.index)
        e = rec["eval"]
        growth = rec["growth"]["adversarial"]["groups"]["2"][-1]
        self.say(f"[{run.index}/{len(self.plan)}] {run.model} seed {run.seed}: clean {e['clean']:.1f}%  FGSM "
                 f"{e['fgsm']:.1f}%  PGD {e['pgd']:.1f}%  growth(L2) {growth:.3f}  train "
                 f"{rec['train_seconds']:.1f}s  eval {e['seconds']:.1f}s | done {self.done}/{len(self.plan)}, "
                 f"to do {len(self.todo)}, {self._where()}")


def run_serial(prog: Progress, common: tuple, records: dict[int, dict[str, Any]],
               train_fn: Callable | None = None) -> None:
    """Execute the runs to do one after the other in this process."""
    for run in list(prog.todo):
        prog.start(run)
        records[run.index] = execute_run(run, *common, train_fn=train_fn)
        prog.finish(run, records[run.index])


def run_pool(prog: Progress, jobs: int, common: tuple, records: dict[int, dict[str, Any]], threads: int = 1) -> None:
    """Execute the runs to do in `jobs` worker processes (spawned), longest first, `threads` threads each."""
    def done(run: PlannedRun, rec: dict[str, Any]) -> None:
        records[run.index] = rec
        prog.finish(run, rec)

    queue = sorted(prog.todo, key=lambda r: -r.cost_units)  # longest first: the last job is a short one
    pool_map(queue, _worker, common, jobs, prog.start, done, threads=threads)


def _parent_watch(parent: int, interval: float = 0.5) -> None:
    """Worker thread: exit the process at once when the driver (`parent`) is gone (killed with SIGKILL, say):
    a worker must never train on into a folder that a re-run resumes. Runs are crash-safe (atomic last.pt)."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def _init_pool_worker(parent: int, threads: int) -> None:
    """Pool initializer: the worker's threads (`_init_worker`); watch the driver; ignore SIGINT while idle (the
    driver stops the workers itself)."""
    import threading

    _init_worker(threads)
    threading.Thread(target=_parent_watch, args=(parent,), daemon=True, name="sspnet-parent-watch").start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_job(worker: Callable, args: tuple) -> Any:
    """One job in a worker: Ctrl-C (from the terminal or forwarded by the driver) interrupts it; the trainer's
    own handler makes it save last.pt first."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return worker(args)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP in the driver of a pool: handled like Ctrl-C (the workers are stopped, then it exits)."""


@contextlib.contextmanager
def _terminate_as_interrupt():
    """While a pool runs, SIGTERM and SIGHUP raise _Terminated in the driver's main thread, so that the workers
    are stopped before it exits (Python's default would end the driver at once and orphan them)."""
    def handle(signum, frame):
        raise _Terminated(f"signal {signum}")

    old = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            old[sig] = signal.signal(sig, handle)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _stop_workers(procs: list[Any], grace: float, interrupt: bool) -> None:
    """End the pool's worker processes: SIGINT first when `interrupt` (a training worker saves last.pt at its
    next step), then SIGTERM / SIGKILL for any still alive after `grace` seconds (or at a second Ctrl-C)."""
    alive = [p for p in procs if p.is_alive()]
    if interrupt:
        for proc in alive:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    try:
        while alive and time.monotonic() < deadline:
            alive[0].join(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
            alive = [p for p in alive if p.is_alive()]
    except KeyboardInterrupt:  # a second Ctrl-C: do not wait
        pass
    for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        for proc in [p for p in alive if p.is_alive()]:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, sig)
        for proc in alive:
            proc.join(timeout=2.0)
        alive = [p for p in alive if p.is_alive()]
        if not alive:
            break


# seconds a worker gets to save last.pt after Ctrl-C before it is killed (it saves at its next sync point)
STOP_GRACE = 30.0


def pool_map(items: list[Any], worker: Callable, common: tuple, jobs: int, on_start: Callable,
             on_done: Callable, threads: int = 1) -> None:
    """worker((item, *common)) for every item in `jobs` spawned processes of `threads` torch threads each, in
    order of submission; on_start(item) before and on_done(item, result) after each. worker must be a
    module-level function.

    The workers never outlive this call: they are ended when it returns or raises, on Ctrl-C, SIGTERM or SIGHUP
    of this process (after a grace period to save last.pt), and each exits by itself within a second when this
    process dies without cleaning up (SIGKILL)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    queue = list(items)
    ctx = multiprocessing.get_context("spawn")  # no fork after torch started its thread pools
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_pool_worker,
                               initargs=(os.getpid(), threads))
    running: dict[Any, Any] = {}
    procs: dict[int, Any] = {}
    try:
        with _terminate_as_interrupt():
            while queue or running:
                while queue and len(running) < jobs:
                    item = queue.pop(0)
                    on_start(item)
                    running[pool.submit(_run_job, worker, (item, *common))] = item
                    procs.update(getattr(pool, "_processes", None) or {})
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    item = running.pop(fut)
                    on_done(item, fut.result())
    except BaseException:
        procs.update(getattr(pool, "_processes", None) or {})
        # Ctrl-C, SIGTERM or a failed run: the other workers save last.pt at their next step, then exit
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_workers(list(procs.values()), STOP_GRACE, interrupt=True)
        raise
    procs.update(getattr(pool, "_processes", None) or {})
    pool.shutdown(wait=True)
    _stop_workers(list(procs.values()), 5.0, False)  # normally all gone already: nothing idles after the call
