"""CIFAR-10 in its two official layouts.

- python version, `cifar-10-batches-py/{data_batch_1..5, test_batch}`: Python-2 pickles of a dict with
  b"data" (uint8 N x 3072: 1024 red, 1024 green, 1024 blue values, each a row-major 32 x 32 plane) and
  b"labels" (list of N ints). Read with `safe_pickle.safe_load` (restricted unpickler).
- binary version, `cifar-10-batches-bin/{data_batch_1..5, test_batch}.bin`: records of 1 label byte + 3072
  pixel bytes in the same plane order.
Both become uint8 N x 3 x 32 x 32 and int64 labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sspnet.data._common import check_arrays, missing
from sspnet.data.safe_pickle import safe_load

PY_DIR, BIN_DIR = "cifar-10-batches-py", "cifar-10-batches-bin"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
RECORD = 1 + 3 * 32 * 32
BATCH_IMAGES = 10000  # images per official batch (data_batch_1..5, test_batch); a file may hold fewer, never more


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def read_python_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch file -> (uint8 N x 3 x 32 x 32, int64 N)."""
    path = Path(path)
    # arrays are built only from bytes in the file, at most one batch of pixels (+ int64 labels of a re-pickle)
    obj = safe_load(path, max_array_bytes=BATCH_IMAGES * (RECORD - 1 + 8))
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict with 'data' and 'labels', found {type(obj).__name__}")
    try:
        data, labels = _get(obj, "data"), _get(obj, "labels")
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc.args[0]!r} (CIFAR-10 batches have 'data' and 'labels')") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' is {desc}, expected a uint8 N x 3072 array")
    if data.shape[1] != RECORD - 1:
        raise ValueError(f"{path}: wrong image size: rows of {data.shape[1]} values, expected 3072 (3 x 32 x 32)")
    if data.shape[0] > BATCH_IMAGES:
        raise ValueError(f"{path}: {data.shape[0]} images in one batch, a CIFAR-10 batch holds at most {BATCH_IMAGES}")
    if not isinstance(labels, (list, tuple, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in labels):
        raise ValueError(f"{path}: 'labels' must be a list of ints")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def read_binary_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file -> (uint8 N x 3 x 32 x 32, int64 N)."""
    path = Path(path)
    size = path.stat().st_size
    if size > BATCH_IMAGES * RECORD:
        raise ValueError(
            f"{path}: {size} bytes, more than a CIFAR-10 binary batch holds ({BATCH_IMAGES} records of "
            f"{RECORD} bytes = {BATCH_IMAGES * RECORD})"
        )
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise ValueError(
            f"{path}: truncated CIFAR-10 binary batch: {raw.size} bytes is not a positive multiple "
            f"of the {RECORD}-byte record (1 label + 3 x 32 x 32 pixels)"
        )
    records = raw.reshape(-1, RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def find_cifar_files(root: Path, split: str) -> tuple[list[Path], str]:
    """The batch files of a split and their kind ("py" or "bin"): python layout first, then binary, then flat."""
    names = BATCHES[split]
    candidates = [(root / PY_DIR, "py", ""), (root / BIN_DIR, "bin", ".bin"), (root, "py", ""), (root, "bin", ".bin")]
    for folder, kind, ext in candidates:
        files = [folder / f"{n}{ext}" for n in names]
        if all(f.is_file() for f in files):
            return files, kind
    pattern = "data_batch_{1..5}" if split == "train" else "test_batch"
    expected = [root / PY_DIR / pattern, root / BIN_DIR / f"{pattern}.bin", root / f"{pattern} (flat folder)"]
    raise missing("cifar10", root, expected, what=f"{split} batches")


def load_cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N x 3 x 32 x 32 and int64 labels N of a CIFAR-10 split."""
    files, kind = find_cifar_files(root, split)
    reader = read_python_batch if kind == "py" else read_binary_batch
    parts = []
    for f in files:
        images, labels = reader(f)
        check_arrays(images, labels, source=str(f), channels=3, size=32, num_classes=10)
        parts.append((images, labels))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
