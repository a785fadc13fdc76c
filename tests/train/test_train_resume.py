"""Kill-and-resume bit-exactness (SIGKILL mid-epoch) and Ctrl-C, with `python -m sspnet train` subprocesses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sspnet.train import load_state

ARGS = [
    "train",
    "--dataset",
    "mnist5k",
    "--model",
    "res",
    "--block",
    "1",
    "--tbsize",
    "16",
    "--epochs",
    "2",
    "--steps-per-epoch",
    "8",
    "--save-every",
    "2",
    "--test-limit",
    "100",
    "--adv",
    "fast",
    "--opt",
    "adam",
    "--lr",
    "1e-3",
    "--seed",
    "3",
    "--quiet",
]
# the killed / interrupted run: every step slowed down so the test can catch it mid-epoch
SLOW = (
    "import sys, time, sspnet.train.loop as t\n"
    "orig = t.train_step\n"
    "def slow(*a, **k):\n    time.sleep(0.3)\n    return orig(*a, **k)\n"
    "t.train_step = slow\n"
    "from sspnet.cli import main\nsys.exit(main(sys.argv[1:]))\n"
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TIMING = ("seconds", "images_per_s")


def _sspnet(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "sspnet", *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )


def _start_slow(save: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW, *ARGS, *extra, "--save", str(save)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_mid_epoch(proc: subprocess.Popen, save: Path, timeout: float = 240) -> None:
    """Return once last.pt holds a mid-epoch position (step > 0)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        last = save / "last.pt"
        if last.is_file():
            try:
                if load_state(last)["step"] > 0:
                    return
            except (RuntimeError, EOFError, OSError):
                pass
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no mid-epoch last.pt appeared")


def _metrics(run: Path) -> list[dict]:
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def _assert_same_run(a: Path, b: Path) -> None:
    sa = torch.load(a / "model_final.pt", weights_only=True)["state_dict"]
    sb = torch.load(b / "model_final.pt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert _metrics(a) == _metrics(b)
    la, lb = load_state(a / "last.pt"), load_state(b / "last.pt")
    assert (la["epoch"], la["step"]) == (lb["epoch"], lb["step"]) == (2, 0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    out = _sspnet(*ARGS, "--save", str(run))
    assert out.returncode == 0, out.stderr
    return run


def test_sigkill_mid_epoch_then_resume_is_bit_identical(reference, tmp_path):
    run = tmp_path / "run"
    proc = _start_slow(run)
    _wait_mid_epoch(proc, run)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    state = load_state(run / "last.pt")
    assert state["step"] > 0 and state["epoch"] < 2  # killed in the middle of an epoch
    out = _sspnet("train", "--resume", str(run), "--quiet")
    assert out.returncode == 0, out.stderr
    _assert_same_run(run, reference)
    assert "resumed at epoch" in (run / "train.log").read_text()


@pytest.mark.slow  # 30 s; test_sigkill_mid_epoch_then_resume_is_bit_identical covers the resume path
def test_sigkill_during_the_eps_warmup_then_resume_is_bit_identical(tmp_path):
    # warm-up over 1.5 epochs of 8 steps: the kill at a mid-epoch save of epoch 1 falls inside it
    warm = ("--eps-warmup", "1.5")
    ref = tmp_path / "ref"
    out = _sspnet(*ARGS, *warm, "--save", str(ref))
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    proc = _start_slow(run, warm)
    _wait_mid_epoch(proc, run)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert load_state(run / "last.pt")["epoch"] == 0
    out = _sspnet("train", "--resume", str(run), "--quiet")
    assert out.returncode == 0, out.stderr
    _assert_same_run(run, ref)


def test_ctrl_c_saves_last_and_resume_matches(reference, tmp_path):
    run = tmp_path / "run"
    proc = _start_slow(run)
    _wait_mid_epoch(proc, run)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and f"--resume {run}" in err and "Traceback" not in err
    state = load_state(run / "last.pt")
    assert 0 < state["epoch"] * 8 + state["step"] < 16
    out = _sspnet("train", "--resume", str(run), "--quiet")
    assert out.returncode == 0, out.stderr
    _assert_same_run(run, reference)
