"""compare's worker processes: they die with their driver (SIGKILL, SIGTERM), run one torch thread whatever
--jobs, and a killed compare, run again, reports what an uninterrupted one does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sspnet.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


_SLOW_WORKER = """
import time

def slow(args):
    time.sleep(args[0])
    return args[0]
"""


_DRIVER = """
import sys
sys.path.insert(0, {helper!r})
import slowjob
from sspnet.experiments.compare.executors.pool import pool_map

def start(item):
    print("start", item, flush=True)

pool_map([{seconds}, {seconds}], slowjob.slow, (), 2, start, lambda item, result: print("done", flush=True))
print("finished", flush=True)
"""


def _children(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is `pid`."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _start_driver(tmp_path: Path, seconds: float) -> tuple[subprocess.Popen, list[int]]:
    """A process running pool_map over two jobs of `seconds` each; returns it once both workers run them."""
    (tmp_path / "slowjob.py").write_text(_SLOW_WORKER)
    script = _DRIVER.format(helper=str(tmp_path), seconds=seconds)
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert driver.stdout.readline().startswith("start") and driver.stdout.readline().startswith("start")
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline:
        workers = [
            c for c in _children(driver.pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        if len(workers) >= 2:
            break
        time.sleep(0.1)
    assert len(workers) >= 2, workers
    return driver, workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_workers_die_within_seconds_when_the_driver_is_killed(tmp_path):
    driver, workers = _start_driver(tmp_path, 60)
    time.sleep(1.0)  # the workers are inside their jobs
    driver.kill()  # SIGKILL: no cleanup in the driver
    driver.wait()
    deadline = time.monotonic() + 10  # the watch polls every 0.5 s; a loaded 2-core machine took over 5 s
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_sigterm_to_the_driver_stops_its_workers_and_a_finished_pool_leaves_none(tmp_path):
    driver, workers = _start_driver(tmp_path, 60)
    time.sleep(1.0)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) != 0  # generous: a loaded 2-core CI machine is slow to start the pool
    assert not [w for w in workers if _alive(w)]

    finished, workers = _start_driver(tmp_path, 0.5)
    out, _ = finished.communicate(timeout=60)
    assert finished.returncode == 0 and "finished" in out
    assert not [w for w in workers if _alive(w)]


def test_compare_runs_use_one_thread_whatever_the_jobs_and_threads_enter_the_hash(tmp_path):
    """CPU float results depend on torch's thread count; the workers of --jobs 2 use one thread, so the runs of
    --jobs 1 do too (the run cache does not know --jobs); --threads N other than 1 is part of the hashes."""
    from sspnet.experiments.compare import CompareConfig, make_plan, run_compare

    cfg = dict(
        models=["res"],
        seeds=1,
        out=str(tmp_path / "cmp"),
        device="cpu",
        quiet=True,
        jobs=1,
        train={"epochs": 1, "steps_per_epoch": 1, "batch_size": 16, "blocks": 1, "eval_n_images": 20},
        eval={"n_images": 6, "sweep_images": 6, "growth_images": 6, "steps": 1, "batch_size": 6, "audit": "off"},
    )
    torch.set_num_threads(2)
    try:
        seen = []

        def spy(c):
            seen.append(torch.get_num_threads())
            return train(c)

        summary = run_compare(CompareConfig(**cfg), train_fn=spy)
        assert seen == [1] and summary["records"][0]["threads"] == 1
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(1)
    h = {t: make_plan(CompareConfig(**cfg, threads=t))[0][0].train_hash for t in (None, 1, 2)}
    assert h[None] == h[1] != h[2]


COMPARE_ARGS = [
    "--models",
    "res,ssp2",
    "--seeds",
    "1",
    "--epochs",
    "3",
    "--steps-per-epoch",
    "25",
    "--tbsize",
    "16",
    "--blocks",
    "1",
    "--n-images",
    "20",
    "--sweep-images",
    "10",
    "--growth-images",
    "10",
    "--pgd-steps",
    "1",
    "--audit",
    "off",
    "--jobs",
    "2",
    "--device",
    "cpu",
    "--quiet",
]


def _numbers(out: Path) -> list:
    results = json.loads((out / "results.json").read_text())
    return [
        (
            r["model"],
            r["epochs"],
            r["eval"]["clean"],
            r["eval"]["fgsm"],
            r["eval"]["pgd"],
            r["trainer_test_acc"],
            r["growth"]["adversarial"]["blocks"]["2"],
        )
        for r in results["records"]
    ]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_killed_compare_leaves_no_worker_and_a_rerun_reports_what_an_uninterrupted_run_does(tmp_path):
    cmd = [sys.executable, "-m", "sspnet", "compare"]
    whole = subprocess.run(cmd + ["--out", str(tmp_path / "whole")] + COMPARE_ARGS, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    driver = subprocess.Popen(
        cmd + ["--out", str(out)] + COMPARE_ARGS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline, workers = time.monotonic() + 120, set()
    while time.monotonic() < deadline and not list(out.glob("runs/*/last.pt")):
        workers |= {
            c for c in _children(driver.pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()
        }
        time.sleep(0.05)
    assert list(out.glob("runs/*/last.pt")) and driver.poll() is None and workers
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 10  # the watch polls every 0.5 s; a loaded 2-core machine took over 5 s
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)]
    again = subprocess.run(cmd + ["--out", str(out)] + COMPARE_ARGS, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert _numbers(out) == _numbers(tmp_path / "whole")
    for metrics in out.glob("runs/*/metrics.jsonl"):
        assert [json.loads(ln)["epoch"] for ln in metrics.read_text().splitlines()] == [1, 2, 3]
