"""Atomic writes (sspnet.io.files): a failed write names the file and leaves nothing half written; written files
take the umask's mode."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

from sspnet.io import files as fileio

pytestmark = pytest.mark.usefixtures("one_thread")


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
