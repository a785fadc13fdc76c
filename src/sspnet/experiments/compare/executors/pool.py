"""A pool of spawned worker processes that never outlive their driver: the machinery of the local
executor (`executors.local`). The workers are ended when the pool is closed, on Ctrl-C, SIGTERM or SIGHUP of
the driver (after a grace period in which a training worker saves last.pt), and each exits by itself within a
second when the driver dies without cleaning up (SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import torch

_WORKER_THREADS = 1  # intra-op threads of this worker process (set by the pool's initializer)
# seconds a worker gets to save last.pt after Ctrl-C before it is killed (it saves at its next sync point)
STOP_GRACE = 30.0


def worker_threads() -> int:
    """The intra-op threads of this worker process (what the pool's initializer set)."""
    return _WORKER_THREADS


def set_threads(threads: int) -> int:
    """torch.set_num_threads(threads); returns threads (a pool setup function)."""
    torch.set_num_threads(int(threads))
    return int(threads)


def _parent_watch(parent: int, interval: float = 0.5) -> None:
    """Worker thread: exit the process at once when the driver (`parent`) is gone (killed with SIGKILL, say):
    a worker must never train on into a folder that a re-run resumes. Runs are crash-safe (atomic last.pt)."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(setup: Callable, args: tuple) -> None:
    """A worker's process: the allocator as the CLI process's; setup(*args) (the threads: returns the count,
    or None to leave torch's)."""
    from sspnet.io.allocator import tune_allocator

    global _WORKER_THREADS
    tune_allocator()  # as the CLI process: a spawned worker starts with glibc's defaults
    threads = setup(*args)
    _WORKER_THREADS = int(threads) if threads is not None else torch.get_num_threads()


def _init_pool_worker(parent: int, setup: Callable, args: tuple) -> None:
    """Pool initializer: `_init_worker`; watch the driver; ignore SIGINT while idle (the driver stops the
    workers itself)."""
    import threading

    _init_worker(setup, args)
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


class ProcessPool:
    """`jobs` spawned worker processes (no fork after torch started its thread pools), each set up by
    setup(*setup_args) in its initializer (`set_threads` by default: one torch thread). submit(fn, arg) runs
    fn(arg) in a worker (fn module-level; Ctrl-C interrupts it there); wait() -> the futures that finished;
    close(interrupted) ends every worker (SIGINT and STOP_GRACE seconds first when interrupted). While the pool
    is open, SIGTERM and SIGHUP raise KeyboardInterrupt in the driver, so that it stops the workers."""

    def __init__(self, jobs: int, setup: Callable = set_threads, setup_args: tuple = (1,)):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.jobs = jobs
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(_terminate_as_interrupt())
        self.pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(os.getpid(), setup, setup_args),
        )
        self.running: set[Any] = set()
        self._procs: dict[int, Any] = {}

    def _track(self) -> None:
        self._procs.update(getattr(self.pool, "_processes", None) or {})

    def submit(self, fn: Callable, arg: Any) -> Any:
        fut = self.pool.submit(_run_job, fn, arg)
        self.running.add(fut)
        self._track()
        return fut

    def wait(self, timeout: float | None = None) -> list[Any]:
        """The futures that finished (at least one, unless `timeout` seconds passed or none runs)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        if not self.running:
            return []
        finished, _ = wait(self.running, timeout=timeout, return_when=FIRST_COMPLETED)
        self.running -= finished
        return list(finished)

    def close(self, interrupted: bool = False) -> None:
        self._track()
        try:
            if interrupted:  # Ctrl-C, SIGTERM or a failed run: the workers save last.pt at their next step
                self.pool.shutdown(wait=False, cancel_futures=True)
                _stop_workers(list(self._procs.values()), STOP_GRACE, interrupt=True)
            else:
                self.pool.shutdown(wait=True)
                _stop_workers(list(self._procs.values()), 5.0, False)  # normally all gone: nothing idles
        finally:
            self._signals.close()


def pool_map(
    items: list[Any],
    worker: Callable,
    common: tuple,
    jobs: int,
    on_start: Callable,
    on_done: Callable,
    threads: int = 1,
) -> None:
    """worker((item, *common)) for every item in a `ProcessPool` of `jobs` processes of `threads` torch threads
    each, in order of submission; on_start(item) before and on_done(item, result) after each. The workers never
    outlive this call."""
    queue = list(items)
    running: dict[Any, Any] = {}
    pool = ProcessPool(jobs, set_threads, (threads,))
    try:
        while queue or running:
            while queue and len(running) < jobs:
                item = queue.pop(0)
                on_start(item)
                running[pool.submit(worker, (item, *common))] = item
            for fut in pool.wait():
                on_done(running.pop(fut), fut.result())
    except BaseException:
        pool.close(interrupted=True)
        raise
    pool.close()
