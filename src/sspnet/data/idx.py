"""MNIST / Fashion-MNIST IDX files (raw or .gz), in torchvision's layout or a flat folder.

IDX format: big-endian header `00 00 TT DD`, TT = element type (0x08 = uint8), DD = number of dimensions, then
DD big-endian uint32 sizes, then the elements. Images: idx3 (N x 28 x 28), labels: idx1 (N).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from sspnet.data._common import check_arrays, missing

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Folders searched under root, first match wins: torchvision's layout, then lower-case names, then root itself.
LAYOUTS = {
    "mnist": ("MNIST/raw", "mnist/raw", "MNIST", "mnist", "raw", "."),
    "fmnist": ("FashionMNIST/raw", "fashion-mnist/raw", "FashionMNIST", "fashion-mnist", "fmnist", "raw", "."),
}
_DTYPES = {0x08: np.uint8}


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    return path.read_bytes()


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or .gz) into a uint8 array; ValueError naming the file on a wrong magic number,
    wrong number of dimensions or a truncated/oversized body."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    zero, dtype_code, dims = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype_code not in _DTYPES:
        raise ValueError(f"{path}: wrong magic number 0x{data[:4].hex()}, expected 0x00000801 (labels) or "
                         f"0x00000803 (images): not an IDX uint8 file")
    if ndim is not None and dims != ndim:
        raise ValueError(f"{path}: wrong magic number 0x{data[:4].hex()}: {dims} dimensions, expected {ndim} "
                         f"(0x0000080{ndim})")
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX file (header needs {header} bytes, file has {len(data)})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    expected = int(np.prod(shape, dtype=np.int64)) if shape else 1
    body = len(data) - header
    if body != expected:
        kind = "truncated" if body < expected else "oversized"
        raise ValueError(f"{path}: {kind} IDX file: header says shape {shape} ({expected} bytes of data), "
                         f"found {body}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(name: str, root: Path, split: str) -> tuple[Path, Path]:
    """(images, labels) paths of a split: the first layout folder holding both (raw preferred over .gz)."""
    image_stem, label_stem = IDX_FILES[split]
    for sub in LAYOUTS[name]:
        folder = root / sub if sub != "." else root
        images, labels = _find(folder, image_stem), _find(folder, label_stem)
        if images is not None and labels is not None:
            return images, labels
    expected = [root / LAYOUTS[name][0] / f"{s}[.gz]" for s in (image_stem, label_stem)]
    expected.append(root / f"{image_stem}[.gz] (flat folder)")
    raise missing(name, root, expected, what=f"{split} IDX files")


def load_idx_dataset(name: str, root: Path, split: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N x 1 x 28 x 28 and int64 labels N of MNIST (`name="mnist"`) or Fashion-MNIST (`"fmnist"`)."""
    image_path, label_path = find_idx_files(name, root, split)
    images = read_idx(image_path, ndim=3)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{image_path}: wrong image size {images.shape[1]}x{images.shape[2]}, expected 28x28")
    labels = read_idx(label_path, ndim=1).astype(np.int64)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{label_path}: {labels.shape[0]} labels but {image_path.name} has {images.shape[0]} images")
    images = images[:, None]
    check_arrays(images, labels, source=str(label_path), channels=1, size=28, num_classes=num_classes)
    return images, labels
