"""One line and exit code 2 for wrong input: damaged checkpoints, config files of the wrong type, full or
read-only disks, bad compare settings, an empty --mirror."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from one_line_errors import one_error_line
from tiny_runs import copy_run

from sspnet.cli import main
from sspnet.io import files as fileio

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "text"])
def test_damaged_last_pt_on_resume_is_one_line(tiny_run, tmp_path, capsys, damage):
    run = copy_run(tiny_run, tmp_path)
    last = run / "last.pt"
    data = last.read_bytes()
    last.write_bytes(
        {
            "empty": b"",
            "truncated": data[: len(data) // 2],
            "random": b"\x80" + os.urandom(2000),
            "text": b"this is not a checkpoint\n",
        }[damage]
    )
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


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("decay", '"x"', "a number"),
        ("save", "5", "a path"),
        ("epochs", "true", "an integer"),
        ("quiet", '"no"', "true or false"),
        ("lr", '"1e-3"', "a number"),
        ("milestones", '["a"]', "a list of integers"),
        ("seed", "1.5", "an integer"),
        ("tensorboard", "1", "true or false"),
    ],
)
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
    assert (
        main(
            [
                "train",
                "--init-from",
                str(txt),
                "--save",
                str(tmp_path / "r"),
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--block",
                "1",
                "--quiet",
            ]
        )
        == 2
    )
    one_error_line(capsys, str(txt), "not a torch checkpoint")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        sspnet.load_model(empty)


def test_disk_errors_are_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fileio, "atomic_write", full)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--save", "run", "--epochs", "1", "--steps-per-epoch", "1", "--block", "1", "--quiet"]) == 2
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
    rc = main(
        [
            "train",
            "--save",
            str(run),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--block",
            "1",
            "--tbsize",
            "16",
            "--test-limit",
            "50",
            "--quiet",
        ]
    )
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
    assert (
        main(
            [
                "attack",
                str(tiny_run),
                "--eps",
                "0.1",
                "--attack",
                "fgsm",
                "--n-examples",
                "10",
                "--quiet",
                "--out",
                str(read_only_disk / "att"),
            ]
        )
        == 2
    )
    one_error_line(capsys, "read-only")
    assert (
        main(["download", "mnist", "--root", str(read_only_disk / "data"), "--mirror", "http://127.0.0.1:9", "--quiet"])
        == 2
    )
    one_error_line(capsys, "read-only")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--alpha", "-1", "--dry-run"], "alpha"),
        (["--alpha", "0", "--dry-run"], "alpha"),
        (["--models", "", "--dry-run"], "--models"),
    ],
)
def test_compare_refuses_bad_settings_before_anything(tmp_path, capsys, argv, needle):
    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), "--quiet"] + argv) == 2
    one_error_line(capsys, needle)
    assert not out.exists()


def test_download_refuses_an_empty_mirror(tmp_path, capsys):
    assert main(["download", "mnist", "--root", str(tmp_path / "d"), "--mirror", ""]) == 2
    one_error_line(capsys, "--mirror")
    assert not (tmp_path / "d").exists()
