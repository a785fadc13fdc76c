"""Small random datasets written in each official on-disk format (for tests, demos and offline checks).

Every writer returns the arrays it wrote (uint8 N x C x H x W, int64 N) so a reader can be checked against them.
The CIFAR python writer emits Python-2-style protocol-2 pickles opcode by opcode (byte strings as BINSTRING,
`numpy.core.multiarray._reconstruct`), i.e. what the official files contain, without importing pickle.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from sspnet.data.idx import IDX_FILES


def random_arrays(n: int, channels: int, size: int, num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)
    labels = (np.arange(n) % num_classes).astype(np.int64)
    rng.shuffle(labels)
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 00 00 08 <ndim>, big-endian uint32 sizes, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def write_mnist(folder: str | Path, n_train: int = 120, n_test: int = 60, gz: bool = True, seed: int = 0):
    """Write the four IDX files into `folder` (e.g. root/MNIST/raw or a flat folder). Returns
    {"train": (images, labels), "test": (...)} with images N x 1 x 28 x 28."""
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = random_arrays(n, 1, 28, 10, seed + (split == "test"))
        img_name, lab_name = IDX_FILES[split]
        ext = ".gz" if gz else ""
        write_idx(Path(folder) / f"{img_name}{ext}", images[:, 0])
        write_idx(Path(folder) / f"{lab_name}{ext}", labels.astype(np.uint8))
        out[split] = (images, labels)
    return out


# --- Python-2 style pickles --------------------------------------------------------------------------------
def _p2_str(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _p2_int(v: int) -> bytes:
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def _p2_value(v) -> bytes:
    if isinstance(v, bytes):
        return _p2_str(v)
    if isinstance(v, (int, np.integer)):
        return _p2_int(int(v))
    if isinstance(v, list):
        return b"](" + b"".join(_p2_value(x) for x in v) + b"e"
    if isinstance(v, np.ndarray) and v.dtype == np.uint8:
        shape = b"(" + b"".join(_p2_int(d) for d in v.shape) + b"t"
        dtype = (
            b"cnumpy\ndtype\n"
            + _p2_str(b"u1")
            + _p2_int(0)
            + _p2_int(1)
            + b"\x87R"
            + b"("
            + _p2_int(3)
            + _p2_str(b"|")
            + b"NNN"
            + _p2_int(-1)
            + _p2_int(-1)
            + _p2_int(0)
            + b"tb"
        )
        return (
            b"cnumpy.core.multiarray\n_reconstruct\n"
            + b"cnumpy\nndarray\n"
            + _p2_int(0)
            + b"\x85"
            + _p2_str(b"b")
            + b"\x87R"
            + b"("
            + _p2_int(1)
            + shape
            + dtype
            + b"\x89"
            + _p2_str(np.ascontiguousarray(v).tobytes())
            + b"tb"
        )
    raise TypeError(f"cannot encode {type(v).__name__}")


def py2_pickle(d: dict) -> bytes:
    """A protocol-2 pickle of a dict with bytes keys, as Python 2's cPickle wrote the CIFAR batches."""
    return b"\x80\x02}(" + b"".join(_p2_str(k) + _p2_value(v) for k, v in d.items()) + b"u."


def _cifar_batches(n_per_batch: int, seed: int):
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        images, labels = random_arrays(n_per_batch, 3, 32, 10, seed + i)
        yield name, images, labels


def _collect(parts):
    train = [p for p in parts if p[0] != "test_batch"]
    test = [p for p in parts if p[0] == "test_batch"]
    cat = lambda ps: (np.concatenate([p[1] for p in ps]), np.concatenate([p[2] for p in ps]))  # noqa: E731
    return {"train": cat(train), "test": cat(test)}


def write_cifar_python(folder: str | Path, n_per_batch: int = 20, seed: int = 0):
    """cifar-10-batches-py style files in `folder`; returns {"train": (...), "test": (...)}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = list(_cifar_batches(n_per_batch, seed))
    for name, images, labels in parts:
        d = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in labels],
            b"data": images.reshape(len(images), -1),
            b"filenames": [f"img_{k}.png".encode() for k in range(len(images))],
        }
        (folder / name).write_bytes(py2_pickle(d))
    return _collect(parts)


def write_cifar_binary(folder: str | Path, n_per_batch: int = 20, seed: int = 0):
    """cifar-10-batches-bin style files (`*.bin`) in `folder`; returns {"train": (...), "test": (...)}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = list(_cifar_batches(n_per_batch, seed))
    for name, images, labels in parts:
        rec = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
        (folder / f"{name}.bin").write_bytes(rec.tobytes())
    return _collect(parts)


def write_tiny(
    base: str | Path,
    wnids: list[str] | None = None,
    per_class: int = 3,
    n_val: int = 8,
    seed: int = 0,
    grey_every: int = 5,
):
    """A tiny-imagenet-200 style folder at `base` with real JPEG files (every `grey_every`-th one greyscale).

    Returns the written file paths {"train": [...], "test": [...]} and labels; pixels are whatever Pillow
    decodes from those JPEGs (lossy), so compare against an independent decode.
    """
    from PIL import Image

    base = Path(base)
    wnids = wnids or ["n01443537", "n01629819", "n01641577"]
    order = {w: i for i, w in enumerate(sorted(wnids))}
    rng = np.random.default_rng(seed)
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    k = 0

    def save(path: Path) -> None:
        nonlocal k
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert("L") if k % grey_every == grey_every - 1 else Image.fromarray(arr)
        img.save(path, format="JPEG", quality=90)
        k += 1

    out = {"train": ([], []), "test": ([], [])}
    for wnid in wnids:
        for j in range(per_class):
            p = base / "train" / wnid / "images" / f"{wnid}_{j}.JPEG"
            save(p)
    for wnid in sorted(wnids):
        for j in range(per_class):
            out["train"][0].append(base / "train" / wnid / "images" / f"{wnid}_{j}.JPEG")
            out["train"][1].append(order[wnid])
    lines = []
    for j in range(n_val):
        wnid = wnids[j % len(wnids)]
        p = base / "val" / "images" / f"val_{j}.JPEG"
        save(p)
        lines.append(f"val_{j}.JPEG\t{wnid}\t0\t0\t63\t63")
        out["test"][0].append(p)
        out["test"][1].append(order[wnid])
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return out
