"""Multi-node training through torchrun's c10d rendezvous, two launchers ("nodes", one gloo process each) on this
machine sharing one run folder: they train the model one process trains on the same global batch, only global
rank 0 writes the folder (and holds its lock), and a run that crashes mid-epoch, resumed with the same launch
command and --resume, ends bit-identical to an uninterrupted 2-process run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sspnet.train import load_state

# as tests/test_train_ddp.py: 101 training images, 4 steps of a global batch of 32 (the last one 5 images, split
# 3 / 2), a BatchNorm model with global-batch statistics
ARGS = [
    "--dataset",
    "mnist5k",
    "--model",
    "res",
    "--block",
    "1",
    "--norm",
    "b",
    "--tbsize",
    "32",
    "--val-split",
    "0.97475",
    "--test-limit",
    "100",
    "--adv",
    "fgsm",
    "--opt",
    "sgd",
    "--lr",
    "0.05",
    "--quiet",
    "--clean-metrics",
    "--no-channels-last",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TIMING = ("seconds", "images_per_s")
TIMEOUT = 120  # seconds for a launch: a rendezvous that never completes fails the test instead of hanging it

# sitecustomize for the launched interpreters: logs every write into the run folder with the writer's RANK
AUDIT = """import json, os, sys
if "AUDIT_RUN" in os.environ:
    _RUN, _LOG = os.path.abspath(os.environ["AUDIT_RUN"]), os.environ["AUDIT_LOG"]
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _PATHS = {"open": 1, "os.rename": 2, "os.remove": 1, "os.mkdir": 1, "os.rmdir": 1, "os.truncate": 1}

    def _record(event, path):
        with open(_LOG, "a") as f:
            f.write(json.dumps({"rank": os.environ.get("RANK", "launcher"), "event": event, "path": path}) + "\\n")

    def _hook(event, args):
        if event not in _PATHS or (event == "open" and not (args[2] or 0) & _WRITE):
            return
        for p in args[:_PATHS[event]]:
            if isinstance(p, (str, bytes, os.PathLike)):
                p = os.path.abspath(os.fsdecode(p))
                if p == _RUN or p.startswith(_RUN + os.sep):
                    _record(event, os.path.relpath(p, _RUN))

    _record("watching", None)
    sys.addaudithook(_hook)
"""
# `sspnet train` whose process dies (like a lost node) right before its CRASH_AT-th optimizer step
CRASH = """import os, sys
import sspnet.train.loop as loop
calls, crash_at, step = [0], int(os.environ["CRASH_AT"]), loop.train_step

def crashing(*args, **kwargs):
    calls[0] += 1
    if calls[0] == crash_at:
        os._exit(3)
    return step(*args, **kwargs)

loop.train_step = crashing
from sspnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(port: int, job: str, *command: str) -> list[str]:
    """One node's launcher: torchrun with the c10d rendezvous on 127.0.0.1:port (ranks assigned by it; the
    processes meet at --local-addr, not at whatever this machine's host name resolves to)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id={job}",
        "--local-addr=127.0.0.1",
        "--max-restarts=0",
        *command,
    ]


def _launch(logs: Path, commands: list[list[str]], env: dict, timeout: float = TIMEOUT) -> list[int]:
    """Start the commands at once, each in its own session, logging to logs/<i>.txt; their exit codes. Any still
    running after `timeout` s is killed with its whole process group (its workers), and the test fails."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for i, cmd in enumerate(commands):
            with open(logs / f"{i}.txt", "w") as out:
                procs.append(
                    subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                )
        end = time.monotonic() + timeout
        codes = [p.wait(timeout=max(0.1, end - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        pytest.fail(f"a launch ran over {timeout} s:\n" + _tails(logs, len(commands)))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
    return codes


def _tails(logs: Path, n: int) -> str:
    return "\n".join(f"--- {i}:\n" + (logs / f"{i}.txt").read_text()[-3000:] for i in range(n))


def _two_nodes(logs: Path, *command: str, env: dict = ENV) -> list[int]:
    port, job = _free_port(), f"sspnet-test-{os.getpid()}-{logs.name}"
    return _launch(logs, [_node(port, job, *command)] * 2, env)


def _ok(logs: Path, codes: list[int]) -> None:
    assert codes == [0] * len(codes), _tails(logs, len(codes))


def _weights(run: Path) -> dict:
    return torch.load(run / "model_final.pt", weights_only=True)["state_dict"]


def _metrics(run: Path) -> list[dict]:
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def test_two_c10d_nodes_match_one_process_and_only_global_rank_0_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(
        tmp_path / "one-log",
        _launch(
            tmp_path / "one-log",
            [[sys.executable, "-m", "sspnet", "train", *ARGS, "--epochs", "1", "--save", str(one)]],
            ENV,
        ),
    )
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(AUDIT)
    audit = tmp_path / "writes.jsonl"
    env = {
        **ENV,
        "AUDIT_RUN": str(two),
        "AUDIT_LOG": str(audit),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "hook"), ENV.get("PYTHONPATH")])),
    }
    logs = tmp_path / "two-log"
    _ok(logs, _two_nodes(logs, "-m", "sspnet", "train", *ARGS, "--epochs", "1", "--save", str(two), env=env))

    a, b = _weights(one), _weights(two)
    gap = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert a.keys() == b.keys() and gap < 1e-5, gap  # weights and BatchNorm running statistics
    ra, rb = _metrics(one), _metrics(two)
    assert [r["images"] for r in ra] == [r["images"] for r in rb] == [101]
    for key in (
        "train_loss",
        "train_acc",
        "adv_train_loss",
        "adv_train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
    ):
        assert abs(ra[0][key] - rb[0][key]) < 1e-4, key
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    log = (two / "train.log").read_text()
    assert log.count("run started") == 1 and "world_size=2" in log and "batchnorm=global" in log

    records = [json.loads(ln) for ln in audit.read_text().splitlines()]
    assert sorted(r["rank"] for r in records if r["event"] == "watching") == ["0", "1", "launcher", "launcher"]
    writes = [r for r in records if r["event"] != "watching"]
    assert {w["rank"] for w in writes} == {"0"}, writes  # not rank 1, not a launcher
    written = {Path(w["path"]).name for w in writes}
    assert {".sspnet.lock", "config.json", "metrics.jsonl", "train.log", "model_final.pt", "last.pt"} <= written
    assert not (two / ".sspnet.lock").exists()  # released at the end


@pytest.mark.slow
def test_two_process_run_crashed_mid_epoch_and_resumed_on_two_c10d_nodes_is_bit_identical(tmp_path):
    """2 epochs of 4 steps, last.pt every 2 steps; both processes die before step 3 of epoch 2 (last.pt: epoch 1
    done, step 2 of epoch 2; step 3's work lost), then the same 2-node launch with --resume finishes the run."""
    args = [*ARGS, "--epochs", "2", "--save-every", "2"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    logs = tmp_path / "ref-log"
    _ok(
        logs,
        _launch(
            logs,
            [
                [
                    sys.executable,
                    "-m",
                    "torch.distributed.run",
                    "--standalone",
                    "--nproc_per_node=2",
                    "-m",
                    "sspnet",
                    "train",
                    *args,
                    "--save",
                    str(ref),
                ]
            ],
            ENV,
        ),
    )

    (tmp_path / "crash.py").write_text(CRASH)
    logs = tmp_path / "crash-log"
    codes = _two_nodes(
        logs, str(tmp_path / "crash.py"), "train", *args, "--save", str(run), env={**ENV, "CRASH_AT": "7"}
    )
    assert all(c != 0 for c in codes), _tails(logs, 2)
    state = load_state(run / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 2)
    assert [r["epoch"] for r in _metrics(run)] == [1]

    logs = tmp_path / "resume-log"
    _ok(logs, _two_nodes(logs, "-m", "sspnet", "train", "--resume", str(run), "--quiet"))
    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(run) == _metrics(ref) and len(_metrics(ref)) == 2
    la, lb = load_state(ref / "last.pt"), load_state(run / "last.pt")
    assert (la["epoch"], la["step"]) == (lb["epoch"], lb["step"]) == (2, 0)
    log = (run / "train.log").read_text()
    assert "resumed at epoch 2 step 2" in log and "world_size=2" in log
    assert not (run / ".sspnet.lock").exists()


def test_last_pt_holds_the_epoch_sums_of_all_ranks_and_a_resume_puts_them_on_rank_0(tmp_path, monkeypatch):
    """Mid-epoch last.pt stores the training sums summed over ranks (not rank 0's alone); on resume rank 0 starts
    from them and the other ranks from zero, so the epoch's reduced metrics count every image once."""
    from types import SimpleNamespace

    import sspnet.distributed as dist
    from sspnet.train.folder import RunFolder
    from sspnet.train.meter import TRAIN_SUMS, Meter

    monkeypatch.setattr(dist, "all_reduce_sum", lambda t: t.mul_(2))  # two ranks holding equal sums
    meter = Meter(TRAIN_SUMS)
    meter.sums += torch.arange(6.0, dtype=torch.float64)
    state = SimpleNamespace(step=2, meter=meter, state_dict=lambda: {"step": 2, "sums": meter.sums.clone()})
    cfg = SimpleNamespace(save=str(tmp_path), resume=True)
    RunFolder(cfg, dist.DistInfo(rank=0, world_size=2)).save_state(state)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert torch.equal(saved["sums"], 2 * torch.arange(6.0, dtype=torch.float64))
    assert torch.equal(meter.sums, torch.arange(6.0, dtype=torch.float64))  # the rank's own sums are kept
    for rank, factor in ((0, 1), (1, 0)):
        folder = RunFolder(cfg, dist.DistInfo(rank=rank, world_size=2))
        folder.state = saved
        assert torch.equal(folder.open()["sums"], factor * saved["sums"])
