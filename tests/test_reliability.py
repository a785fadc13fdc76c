"""Reliability (issue 13, parts 1, 4 and 5): processes that die with their driver, folder locks, one line and
exit code 2 for every wrong input (damaged checkpoints, wrong option types, full or read-only disks), and
nothing silent (empty --save, resume without last.pt, edited scheme files, non-finite weights, advice that
works, --force runs resumable, compare's numbers independent of --jobs, files with the umask's mode)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sspnet.cli import main
from sspnet.io import files as fileio
from sspnet.io.lock import LOCK_FILE, FolderLock, FolderLockedError
from sspnet.train import NonFiniteLossError, TrainConfig, load_state, train

TINY = dict(dataset="mnist5k", model="res", blocks=1, batch_size=16, quiet=True, eval_n_images=50, seed=1)

pytestmark = pytest.mark.usefixtures("one_thread")


def one_error_line(capsys, *needles: str) -> str:
    """The single stderr line of a refused command, checked for its prefix and `needles`."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("sspnet ") and ": error: " in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One finished epoch of a tiny run (2 steps); tests copy it."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=2, save=str(run)))
    return run


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


# ---- 1. locks and worker processes -------------------------------------------------------------------------

def test_folder_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path):
    folder = tmp_path / "out"
    with FolderLock(folder, "sspnet compare") as lock:
        assert lock.held and f"pid={os.getpid()}" in (folder / LOCK_FILE).read_text()
        with pytest.raises(FolderLockedError, match=rf"in use by sspnet compare \(PID {os.getpid()}"):
            FolderLock(folder, "sspnet compare").acquire()
    assert not folder.exists()  # created for the lock, empty again: removed

    # a lock file left by a process that died (here: one that never ran flock) is taken over
    folder.mkdir()
    (folder / LOCK_FILE).write_text("pid=999999999\nhost=elsewhere\ncommand=sspnet train\n")
    with FolderLock(folder, "sspnet train"):
        assert f"pid={os.getpid()}" in (folder / LOCK_FILE).read_text()
    assert folder.is_dir() and not (folder / LOCK_FILE).exists()


def test_lock_of_a_killed_process_is_released(tmp_path):
    folder = tmp_path / "out"
    code = (f"import sys, time; from sspnet.io.lock import FolderLock; lock = FolderLock({str(folder)!r}, 'holder')"
            ".acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderLockedError, match=rf"PID {holder.pid}\b"):
            FolderLock(folder).acquire()
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(folder):  # the kernel dropped the dead holder's lock
        pass


def test_second_compare_and_second_train_on_one_folder_are_refused(tmp_path, capsys):
    out = tmp_path / "cmp"
    with FolderLock(out, "sspnet compare"):
        assert main(["compare", "--out", str(out), "--quiet"]) == 2
        one_error_line(capsys, str(out), f"PID {os.getpid()}", "sspnet compare")
        assert not (out / "runs").exists()
    run = tmp_path / "run"
    with FolderLock(run, "sspnet train"):
        with pytest.raises(FolderLockedError):
            train(TrainConfig(**TINY, epochs=1, steps_per_epoch=1, save=str(run)))
        assert main(["train", "--save", str(run), "--epochs", "1", "--quiet"]) == 2
        one_error_line(capsys, str(run), "in use by sspnet train")
        assert os.listdir(run) == [LOCK_FILE]


def test_train_holds_the_lock_while_it_runs_and_drops_it_after(tmp_path):
    run = tmp_path / "run"
    seen = []
    import sspnet.train.loop as loop

    real = loop._train_run

    def spy(r):
        with pytest.raises(FolderLockedError):
            FolderLock(run).acquire()
        seen.append(True)
        return real(r)

    loop._train_run = spy
    try:
        train(TrainConfig(**TINY, epochs=1, steps_per_epoch=1, save=str(run)))
    finally:
        loop._train_run = real
    assert seen and not (run / LOCK_FILE).exists()
    with FolderLock(run):
        pass


def test_one_ctrl_c_that_arrives_twice_stops_gracefully_and_a_later_second_one_aborts(monkeypatch):
    """A terminal's Ctrl-C reaches a compare worker directly and again through the driver: the same press."""
    from sspnet.train import loop

    now = {"t": 100.0}
    monkeypatch.setattr(loop.time, "monotonic", lambda: now["t"])
    stop = loop._Stop()
    stop._handle(signal.SIGINT, None)
    now["t"] += 0.5
    stop._handle(signal.SIGINT, None)  # the forwarded copy: still a graceful stop
    assert stop.requested
    now["t"] += 5
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


_SLOW_WORKER = '''
import time

def slow(args):
    time.sleep(args[0])
    return args[0]
'''

_DRIVER = '''
import sys
sys.path.insert(0, {helper!r})
import slowjob
from sspnet.experiments.compare.executors.pool import pool_map

def start(item):
    print("start", item, flush=True)

pool_map([{seconds}, {seconds}], slowjob.slow, (), 2, start, lambda item, result: print("done", flush=True))
print("finished", flush=True)
'''


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
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    assert driver.stdout.readline().startswith("start") and driver.stdout.readline().startswith("start")
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline:
        workers = [c for c in _children(driver.pid)
                   if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
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
    assert driver.wait(timeout=20) != 0
    assert not [w for w in workers if _alive(w)]

    finished, workers = _start_driver(tmp_path, 0.5)
    out, _ = finished.communicate(timeout=30)
    assert finished.returncode == 0 and "finished" in out
    assert not [w for w in workers if _alive(w)]


# ---- 4. one line and exit code 2 ---------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "text"])
def test_damaged_last_pt_on_resume_is_one_line(tiny_run, tmp_path, capsys, damage):
    run = copy_run(tiny_run, tmp_path)
    last = run / "last.pt"
    data = last.read_bytes()
    last.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "random": b"\x80" + os.urandom(2000),
                      "text": b"this is not a checkpoint\n"}[damage])
    metrics = (run / "metrics.jsonl").read_bytes()
    config = (run / "config.json").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    one_error_line(capsys, "cannot resume", "last.pt", "--force")
    assert (run / "metrics.jsonl").read_bytes() == metrics and (run / "config.json").read_bytes() == config


@pytest.mark.parametrize("content", ["[1, 2]", '{"config": 5}', '"text"'])
def test_config_json_that_is_no_object_is_one_line(tiny_run, tmp_path, capsys, content):
    run = copy_run(tiny_run, tmp_path)
    (run / "config.json").write_text(content)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    one_error_line(capsys, "config.json")


@pytest.mark.parametrize("key, value, expected", [
    ("decay", '"x"', "a number"), ("save", "5", "a path"), ("epochs", "true", "an integer"),
    ("quiet", '"no"', "true or false"), ("lr", '"1e-3"', "a number"), ("milestones", '["a"]', "a list of integers"),
    ("seed", "1.5", "an integer"), ("tensorboard", "1", "true or false")])
def test_config_file_values_of_the_wrong_type_are_one_line(tmp_path, capsys, monkeypatch, key, value, expected):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.json"
    cfg.write_text(f'{{"{key}": {value}}}')
    assert main(["train", "--config", str(cfg)]) == 2
    one_error_line(capsys, f"must be {expected}", f"(config key {key})")
    assert sorted(os.listdir(tmp_path)) == ["c.json"]


def test_text_file_as_checkpoint_is_one_line(tmp_path, capsys):
    import sspnet

    txt = tmp_path / "notes.pt"
    txt.write_text("hello\n")
    with pytest.raises(ValueError, match="is not a torch checkpoint"):
        sspnet.load_model(txt)
    assert main(["attack", str(txt), "--eps", "0.1"]) == 2
    one_error_line(capsys, str(txt), "not a torch checkpoint")
    assert main(["growth", str(txt)]) == 2
    one_error_line(capsys, str(txt), "not a torch checkpoint")
    assert main(["train", "--init-from", str(txt), "--save", str(tmp_path / "r"), "--epochs", "1",
                 "--steps-per-epoch", "1", "--block", "1", "--quiet"]) == 2
    one_error_line(capsys, str(txt), "not a torch checkpoint")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        sspnet.load_model(empty)


def test_failed_writes_name_the_file_and_leave_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    fileio.atomic_write_json(target, {"old": True})
    log = tmp_path / "metrics.jsonl"
    fileio.append_line(log, '{"epoch": 1}')

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(OSError) as info:
        fileio.atomic_write_json(target, {"new": True})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert json.loads(target.read_text()) == {"old": True}
    with pytest.raises(OSError) as info:
        fileio.append_line(log, '{"epoch": 2}')
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(log)
    assert log.read_text() == '{"epoch": 1}\n'  # the half line was cut off again
    assert sorted(os.listdir(tmp_path)) == ["a.json", "metrics.jsonl"]


def test_disk_errors_are_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fileio, "atomic_write", full)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--save", "run", "--epochs", "1", "--steps-per-epoch", "1", "--block", "1",
                 "--quiet"]) == 2
    one_error_line(capsys, "cannot write run", "disk is full")


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def _tmpfs(tmp_path, name: str, options: str, what: str):
    """A tmpfs mounted at tmp_path/name for the test, unmounted after (skipped where it cannot be mounted)."""
    mnt = tmp_path / name
    if not _mount_tmpfs(mnt, options):
        pytest.skip(f"cannot mount {what} here (needs root and mount permission)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB tmpfs."""
    yield from _tmpfs(tmp_path, "disk", "size=300k", "a tmpfs")


@pytest.fixture
def read_only_disk(tmp_path):
    yield from _tmpfs(tmp_path, "ro", "size=64k,ro", "a read-only tmpfs")


def test_full_disk_in_train_is_one_line_and_nothing_half_written(small_disk, capsys):
    run = small_disk / "run"
    rc = main(["train", "--save", str(run), "--epochs", "1", "--steps-per-epoch", "2", "--block", "1", "--tbsize",
               "16", "--test-limit", "50", "--quiet"])
    assert rc == 2
    one_error_line(capsys, "disk is full", str(small_disk))
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]
    for name in ("config.json", "metrics.jsonl"):  # what was written is whole
        if (run / name).exists():
            text = (run / name).read_text()
            assert not text or text.endswith(("}", "}\n"))


def test_read_only_output_folders_are_one_line(read_only_disk, tiny_run, capsys):
    assert main(["train", "--save", str(read_only_disk / "run"), "--epochs", "1", "--quiet"]) == 2
    one_error_line(capsys, "read-only", str(read_only_disk / "run"))
    assert main(["compare", "--out", str(read_only_disk / "cmp"), "--quiet"]) == 2
    one_error_line(capsys, "read-only", str(read_only_disk / "cmp"))
    assert main(["attack", str(tiny_run), "--eps", "0.1", "--attack", "fgsm", "--n-examples", "10", "--quiet",
                 "--out", str(read_only_disk / "att")]) == 2
    one_error_line(capsys, "read-only")
    assert main(["download", "mnist", "--root", str(read_only_disk / "data"), "--mirror", "http://127.0.0.1:9",
                 "--quiet"]) == 2
    one_error_line(capsys, "read-only")


# ---- 5. nothing silent -------------------------------------------------------------------------------------

def test_empty_save_and_non_finite_hyper_parameters_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--save", "", "--epochs", "1"]) == 2
    one_error_line(capsys, "--out must name a run folder")
    for flag, value in (("--decay", "inf"), ("--decay", "nan"), ("--lr", "inf")):
        assert main(["train", flag, value, "--epochs", "1", "--save", "r"]) == 2
        one_error_line(capsys, flag, "finite")
    assert os.listdir(tmp_path) == []


def test_resume_without_last_pt_is_refused(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    (run / "last.pt").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    one_error_line(capsys, "no last.pt", "--force")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    train(TrainConfig.from_run(run, epochs=2))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 2
    one_error_line(capsys, "--epochs 1", "trained 2 epochs", "--epochs 2 or more")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


RALSTON = 'name: ralston\nA: [[0, 0], ["2/3", 0]]\nb: ["1/4", "3/4"]\norder: 2\n'


def test_an_edited_scheme_file_is_refused_on_resume(tmp_path, capsys):
    scheme = tmp_path / "ralston.yaml"
    scheme.write_text(RALSTON)
    run = tmp_path / "run"
    train(TrainConfig(**{**TINY, "model": str(scheme)}, epochs=1, steps_per_epoch=1, save=str(run)))
    assert list(json.loads((run / "config.json").read_text())["scheme_hashes"]) == [str(scheme)]
    scheme.write_text("# a comment changes no coefficient\n" + RALSTON)
    train(TrainConfig.from_run(run, epochs=2, steps_per_epoch=1))  # resumes
    scheme.write_text('name: ralston\nA: [[0, 0], ["1/2", 0]]\nb: [0, 1]\norder: 2\n')  # now the midpoint rule
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    one_error_line(capsys, f"the scheme file {scheme} was edited")


def test_non_finite_weights_stop_the_run_before_they_are_saved(tmp_path, monkeypatch):
    """The loss is finite at the step that breaks the weights (a huge --decay does this): the guard checks the
    weights at every sync point, before any save, so last.pt keeps finite weights."""
    import sspnet.train.setup as setup

    real = setup.build_optimizer
    steps = {"n": 0}

    def breaking(params, *args, **kw):
        opt = real(params, *args, **kw)

        def post(optimizer, a, k):
            steps["n"] += 1
            if steps["n"] == 4:  # after the 4th step's finite loss, just before the check of step 4
                with torch.no_grad():
                    optimizer.param_groups[0]["params"][0].fill_(float("inf"))
        opt.register_step_post_hook(post)
        return opt

    monkeypatch.setattr(setup, "build_optimizer", breaking)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="non-finite weights.* at epoch 1, by step 4") as info:
        train(TrainConfig(**TINY, epochs=1, steps_per_epoch=6, save=str(run), save_every=2, log_interval=2))
    assert "--force" in str(info.value) and "lower --lr" in str(info.value)
    state = load_state(run / "last.pt")
    assert state["step"] == 2 and all(torch.isfinite(t).all() for t in state["model"].values()
                                      if t.is_floating_point())
    assert not (run / "metrics.jsonl").exists()


def test_interrupt_advice_works(tmp_path, capsys, monkeypatch):
    import sspnet.train

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(sspnet.train, "train", interrupted)
    run = tmp_path / "run"
    assert main(["train", "--save", str(run), "--epochs", "1", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "--force" in err  # no last.pt: nothing to resume
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")
    assert main(["train", "--save", str(run), "--epochs", "1", "--quiet", "--force"]) == 130
    assert f"sspnet train --resume {run}" in capsys.readouterr().err


def test_a_run_started_with_force_can_be_resumed(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--save", str(run), "--block", "1", "--tbsize", "16", "--test-limit", "50",
            "--steps-per-epoch", "1", "--quiet"]
    assert main(args + ["--epochs", "1", "--force"]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0, capsys.readouterr().err
    assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize("argv, needle", [
    (["--alpha", "-1", "--dry-run"], "alpha"), (["--alpha", "0", "--dry-run"], "alpha"),
    (["--models", "", "--dry-run"], "--models")])
def test_compare_refuses_bad_settings_before_anything(tmp_path, capsys, argv, needle):
    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), "--quiet"] + argv) == 2
    one_error_line(capsys, needle)
    assert not out.exists()


def test_download_refuses_an_empty_mirror(tmp_path, capsys):
    assert main(["download", "mnist", "--root", str(tmp_path / "d"), "--mirror", ""]) == 2
    one_error_line(capsys, "--mirror")
    assert not (tmp_path / "d").exists()


def test_compare_runs_use_one_thread_whatever_the_jobs_and_threads_enter_the_hash(tmp_path):
    """CPU float results depend on torch's thread count; the workers of --jobs 2 use one thread, so the runs of
    --jobs 1 do too (the run cache does not know --jobs); --threads N other than 1 is part of the hashes."""
    from sspnet.experiments.compare import CompareConfig, make_plan, run_compare

    cfg = dict(models=["res"], seeds=1, out=str(tmp_path / "cmp"), device="cpu", quiet=True, jobs=1,
               train={"epochs": 1, "steps_per_epoch": 1, "batch_size": 16, "blocks": 1, "eval_n_images": 20},
               eval={"n_images": 6, "sweep_images": 6, "growth_images": 6, "steps": 1, "batch_size": 6,
                     "audit": "off"})
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


def test_written_files_take_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        fileio.atomic_write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "a.txt", 0o640)
        fileio.atomic_write_text(tmp_path / "a.txt", "y")  # a replaced file keeps its mode
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
        os.umask(0o077)
        fileio.atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "b.pt")
        assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


COMPARE_ARGS = ["--models", "res,ssp2", "--seeds", "1", "--epochs", "3", "--steps-per-epoch", "25", "--tbsize",
                "16", "--blocks", "1", "--n-images", "20", "--sweep-images", "10", "--growth-images", "10",
                "--pgd-steps", "1", "--audit", "off", "--jobs", "2", "--device", "cpu", "--quiet"]


def _numbers(out: Path) -> list:
    results = json.loads((out / "results.json").read_text())
    return [(r["model"], r["epochs"], r["eval"]["clean"], r["eval"]["fgsm"], r["eval"]["pgd"], r["trainer_test_acc"],
             r["growth"]["adversarial"]["blocks"]["2"]) for r in results["records"]]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_killed_compare_leaves_no_worker_and_a_rerun_reports_what_an_uninterrupted_run_does(tmp_path):
    cmd = [sys.executable, "-m", "sspnet", "compare"]
    whole = subprocess.run(cmd + ["--out", str(tmp_path / "whole")] + COMPARE_ARGS, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    driver = subprocess.Popen(cmd + ["--out", str(out)] + COMPARE_ARGS, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline, workers = time.monotonic() + 120, set()
    while time.monotonic() < deadline and not list(out.glob("runs/*/last.pt")):
        workers |= {c for c in _children(driver.pid)
                    if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()}
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
