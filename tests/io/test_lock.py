"""Folder locks (sspnet.io.lock): a second holder is refused in one line, a dead holder's lock is taken over, and
train holds its run folder's lock while it runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from one_line_errors import one_error_line
from tiny_runs import TINY

from sspnet.cli import main
from sspnet.io.lock import LOCK_FILE, FolderLock, FolderLockedError
from sspnet.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


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
    code = (
        f"import sys, time; from sspnet.io.lock import FolderLock; lock = FolderLock({str(folder)!r}, 'holder')"
        ".acquire(); print('held', flush=True); time.sleep(60)"
    )
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
