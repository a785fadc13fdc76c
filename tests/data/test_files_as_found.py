"""Data files as people have them: dot-named and gzipped IDX files, near misses listed before the download
command, protocol-2 CIFAR batches, MNIST files refused as Fashion-MNIST, the run's recorded data folder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from sspnet import data
from sspnet.cli import main
from sspnet.data import synthetic


def _dotted(name: str) -> str:
    return name.replace("-idx", ".idx")


@pytest.mark.parametrize("sub", ["MNIST/raw", "."])
@pytest.mark.parametrize("gz", [False, True])
def test_dot_named_idx_files_load_as_they_are(tmp_path, sub, gz):
    """train-images.idx3-ubyte (a dot before idx), as a common mirror names them, raw or .gz."""
    folder = tmp_path / sub
    ref = synthetic.write_mnist(folder, n_train=40, n_test=20, gz=gz, seed=2)
    for f in list(folder.iterdir()):
        f.rename(folder / _dotted(f.name))
    assert sorted(p.name for p in folder.iterdir())[0].startswith("t10k-images.idx3-ubyte")
    for split in ("train", "test"):
        x, y = data.load("mnist", tmp_path, split)
        np.testing.assert_array_equal(x.numpy(), ref[split][0])
        np.testing.assert_array_equal(y.numpy(), ref[split][1])


def test_missing_files_error_lists_near_misses_before_the_download_command(tmp_path, capsys):
    synthetic.write_mnist(tmp_path, n_train=10, n_test=10, gz=False)
    renames = {
        "train-images-idx3-ubyte": "Train-Images-Idx3-Ubyte",  # case
        "train-labels-idx1-ubyte": "train_labels_idx1_ubyte.gz",  # separators
        "t10k-images-idx3-ubyte": "t10k-images-idx3-ubyte.zip",
    }  # an extension
    for old, new in renames.items():
        (tmp_path / old).rename(tmp_path / new)
    (tmp_path / "t10k-labels-idx1-ubyte").rename(tmp_path / "keep")
    (tmp_path / "t10k-labels-idx1-ubyte").mkdir()  # a folder of the file's name (as some archives unpack)
    (tmp_path / "notes.txt").write_text("unrelated")
    with pytest.raises(FileNotFoundError) as info:
        data.load("mnist", tmp_path, "train")
    msg = str(info.value)
    for new in renames.values():
        assert str(tmp_path / new) in msg
    assert f"{tmp_path / 't10k-labels-idx1-ubyte'}/ (a folder)" in msg and "notes.txt" not in msg and "keep" not in msg
    assert msg.index("Found files with similar names") < msg.index("Fetch them with: sspnet download mnist")
    assert "train-images.idx3-ubyte" in msg  # the dotted names are among those looked for
    # the command line: one line, exit code 2
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--data-root",
            str(tmp_path),
            "--epochs",
            "1",
            "--quiet",
            "--save",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Train-Images-Idx3-Ubyte" in err


def _py3_batches(folder: Path, n: int = 6, seed: int = 0):
    """cifar-10-batches-py files as Python 3 re-pickles them at protocol 2 (bytes through _codecs.encode)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        images, labels = synthetic.random_arrays(n, 3, 32, 10, seed + i)
        d = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in labels],
            b"data": images.reshape(n, -1),
            b"filenames": [f"img_{k}.png".encode() for k in range(n)],
        }
        blob = pickle.dumps(d, protocol=2)
        assert b"_codecs\nencode" in blob
        (folder / name).write_bytes(blob)
        out.setdefault("train" if name != "test_batch" else "test", []).append((images, labels))
    return {k: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v])) for k, v in out.items()}


def test_protocol2_python3_cifar_batches_load(tmp_path):
    ref = _py3_batches(tmp_path / "cifar-10-batches-py")
    for split in ("train", "test"):
        x, y = data.load("cifar10", tmp_path, split)
        np.testing.assert_array_equal(x.numpy(), ref[split][0])
        np.testing.assert_array_equal(y.numpy(), ref[split][1])


def _write_split(folder: Path, images: np.ndarray, labels: np.ndarray, split: str) -> None:
    from sspnet.data.idx import IDX_FILES

    img, lab = IDX_FILES[split]
    synthetic.write_idx(folder / img, images[:, 0])
    synthetic.write_idx(folder / lab, labels.astype(np.uint8))


def test_fmnist_refuses_mnist_files_in_a_flat_folder(tmp_path):
    """Real digits (the embedded ones) written as the four IDX files directly in the folder."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        x, y = data.load_numpy("mnist5k", split=split)
        pick = rng.permutation(len(y))[:300]
        _write_split(tmp_path, x[pick], y[pick], split)
    assert data.load("mnist", tmp_path, "train")[0].shape == (300, 1, 28, 28)  # as MNIST: fine
    with pytest.raises(ValueError) as info:
        data.load("fmnist", tmp_path, "train")
    msg = str(info.value)
    assert "\n" not in msg and f"IDX files in {tmp_path} hold MNIST digits, not Fashion-MNIST" in msg
    assert "--dataset mnist" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg


@pytest.mark.parametrize(
    "name, other, first",
    [
        ("fmnist", "MNIST digits", (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)),
        ("mnist", "Fashion-MNIST", (9, 0, 0, 3, 0, 2, 7, 2, 5, 5)),
    ],
)
def test_the_official_first_labels_tell_the_datasets_apart(tmp_path, name, other, first):
    images, labels = synthetic.random_arrays(30, 1, 28, 10, seed=1)  # random pixels: no pixel-statistics hint
    labels[:10] = first
    _write_split(tmp_path, images, labels, "train")
    with pytest.raises(ValueError, match=f"hold {other}, not .*its first labels are {', '.join(map(str, first))}"):
        data.load(name, tmp_path, "train")
    loaded = data.load({"fmnist": "mnist", "mnist": "fmnist"}[name], tmp_path, "train")[1]
    assert loaded[:10].tolist() == list(first)


def test_attack_and_growth_use_the_runs_recorded_data_folder(tmp_path, monkeypatch, capsys):
    root = tmp_path / "my-data"
    synthetic.write_mnist(root / "MNIST" / "raw", n_train=64, n_test=20, seed=5)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist",
                "--data-root",
                str(root),
                "--block",
                "1",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--tbsize",
                "16",
                "--val-split",
                "0",
                "--quiet",
                "--save",
                str(run),
            ]
        )
        == 0
    )
    monkeypatch.delenv("SSPNET_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # ./data does not exist: only the recorded folder holds the files
    capsys.readouterr()
    assert main(["attack", str(run), "--eps", "0.1", "--iters", "1", "--grid", "0", "--quiet"]) == 0
    assert "20 test images" in capsys.readouterr().out
    assert main(["growth", str(run), "--n", "10", "--steps", "1", "--quiet"]) == 0
    assert (run / "growth.json").is_file()
    # an explicit --data-root still wins
    assert (
        main(["attack", str(run), "--eps", "0.1", "--iters", "1", "--data-root", str(tmp_path / "none"), "--quiet"])
        == 2
    )
    assert str(tmp_path / "none") in capsys.readouterr().err
