"""MNIST / Fashion-MNIST IDX files (raw or .gz), in torchvision's layout or a flat folder.

IDX format: big-endian header `00 00 TT DD`, TT = element type (0x08 = uint8), DD = number of dimensions, then
DD big-endian uint32 sizes, then the elements. Images: idx3 (N x 28 x 28), labels: idx1 (N).

Names: the official `train-images-idx3-ubyte[.gz]` and the common mirrors' `train-images.idx3-ubyte[.gz]` (a dot
before idx) are read as they are; files with other near-miss names (case, separators, extra extensions) are
listed in the missing-files error. MNIST and Fashion-MNIST share the file names, so the loaded content is
checked (`check_content`): `fmnist` refuses MNIST digits and `mnist` refuses Fashion-MNIST.
"""

from __future__ import annotations

import difflib
import gzip
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np

from sspnet.data._common import check_arrays, missing
from sspnet.data.specs import get_dataset_spec

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
# The first ten labels of the official files (a fingerprint that tells the two datasets apart).
FIRST_LABELS = {
    "mnist": {"train": (5, 0, 4, 1, 9, 2, 1, 3, 1, 4), "test": (7, 2, 1, 0, 4, 1, 4, 9, 5, 9)},
    "fmnist": {"train": (9, 0, 0, 3, 0, 2, 7, 2, 5, 5), "test": (9, 2, 1, 1, 6, 1, 4, 6, 5, 7)},
}
DISPLAY = {"mnist": "MNIST digits", "fmnist": "Fashion-MNIST"}


CHUNK = 1 << 20
MAX_BYTES = 1 << 30  # data bytes read_idx accepts from a header by default (the official train images: 47 MB)


def _read_up_to(f, n: int) -> bytearray:
    """At most n bytes from f, read in chunks: never more memory than the bytes actually there (and n)."""
    out = bytearray()
    while len(out) < n:
        block = f.read(min(CHUNK, n - len(out)))
        if not block:
            break
        out += block
    return out


def read_idx(
    path: str | Path,
    ndim: int | None = None,
    *,
    item_shape: tuple[int, ...] | None = None,
    max_items: int | None = None,
    max_bytes: int = MAX_BYTES,
) -> np.ndarray:
    """Read one IDX file (raw or .gz) into a uint8 array; ValueError naming the file on a wrong magic number,
    wrong number of dimensions or a truncated/oversized body.

    The header is read and checked first: magic, dimensions, `item_shape` (the sizes after the first, e.g.
    (28, 28) for images), at most `max_items` along the first dimension and `max_bytes` of data in all. Then
    exactly the bytes it promises are read, in chunks, and one more byte must not exist: a file or gzip stream
    holding more (a decompression bomb) is refused without being read further."""
    path = Path(path)
    gz = path.suffix == ".gz"
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            return _read_idx(f, path, gz, ndim, item_shape, max_items, max_bytes)
    except (OSError, EOFError, zlib.error) as exc:
        if not gz or isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"{path}: corrupt or truncated gzip file ({exc})") from None


def _read_idx(
    f, path: Path, gz: bool, ndim: int | None, item_shape: tuple[int, ...] | None, max_items: int | None, max_bytes: int
) -> np.ndarray:
    magic = bytes(_read_up_to(f, 4))
    if len(magic) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(magic)} bytes, no header)")
    zero, dtype_code, dims = int.from_bytes(magic[:2], "big"), magic[2], magic[3]
    if zero != 0 or dtype_code not in _DTYPES:
        raise ValueError(
            f"{path}: wrong magic number 0x{magic.hex()}, expected 0x00000801 (labels) or "
            f"0x00000803 (images): not an IDX uint8 file"
        )
    if ndim is not None and dims != ndim:
        raise ValueError(
            f"{path}: wrong magic number 0x{magic.hex()}: {dims} dimensions, expected {ndim} (0x0000080{ndim})"
        )
    header = 4 + 4 * dims
    sizes = bytes(_read_up_to(f, 4 * dims))
    if len(sizes) < 4 * dims:
        raise ValueError(f"{path}: truncated IDX file (header needs {header} bytes, file has {4 + len(sizes)})")
    shape = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(dims))
    if item_shape is not None and shape[1:] != tuple(item_shape):
        raise ValueError(
            f"{path}: wrong image size {'x'.join(map(str, shape[1:]))}, expected {'x'.join(map(str, item_shape))}"
        )
    if max_items is not None and shape and shape[0] > max_items:
        raise ValueError(
            f"{path}: header says {shape[0]} items (shape {shape}), more than the {max_items} this dataset's files hold"
        )
    expected = math.prod(shape)
    if expected > max_bytes:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes of data), more than the {max_bytes} bytes accepted"
        )
    if not gz:
        body = os.fstat(f.fileno()).st_size - header
        if body != expected:
            kind = "truncated" if body < expected else "oversized"
            raise ValueError(
                f"{path}: {kind} IDX file: header says shape {shape} ({expected} bytes of data), found {body}"
            )
    data = _read_up_to(f, expected)
    if len(data) < expected:
        raise ValueError(
            f"{path}: truncated IDX file: header says shape {shape} ({expected} bytes of data), found {len(data)}"
        )
    if f.read(1):
        raise ValueError(
            f"{path}: oversized IDX file: header says shape {shape} ({expected} bytes of data), "
            f"found more (not read further)"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def file_names(stem: str) -> tuple[str, ...]:
    """The names a file is read under, in order: official (`train-images-idx3-ubyte`), then the mirrors' dot
    before idx (`train-images.idx3-ubyte`), each raw before .gz."""
    dotted = stem.replace("-idx", ".idx")
    return (stem, f"{stem}.gz", dotted, f"{dotted}.gz")


def _find(folder: Path, stem: str) -> Path | None:
    for name in file_names(stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _squash(name: str) -> str:
    """A name without case, separators and a trailing gz: 'Train_Images.IDX3-ubyte.gz' -> 'trainimagesidx3ubyte'."""
    s = re.sub(r"[^0-9a-z]", "", name.lower())
    return s[:-2] if s.endswith("gz") else s


def near_misses(folders: list[Path], limit: int = 12) -> list[Path]:
    """Entries of `folders` whose names resemble an IDX file name but are not read (other case or separators,
    an extra extension, a folder of that name, ...), at most `limit`."""
    stems = [s for pair in IDX_FILES.values() for s in pair]
    exact = {n for s in stems for n in file_names(s)}
    wanted = [_squash(s) for s in stems]
    found: list[Path] = []
    for folder in dict.fromkeys(folders):
        try:
            entries = sorted(folder.iterdir())[:10000] if folder.is_dir() else []
        except OSError:
            continue
        for entry in entries:
            if entry.name in exact and entry.is_file():
                continue
            s = _squash(entry.name)
            if any(w in s or difflib.SequenceMatcher(None, s, w).ratio() >= 0.9 for w in wanted):
                found.append(entry)
                if len(found) >= limit:
                    return found
    return found


def find_idx_files(name: str, root: Path, split: str) -> tuple[Path, Path]:
    """(images, labels) paths of a split: the first layout folder holding both (official names before the
    mirrors' dotted ones, raw before .gz). FileNotFoundError listing near-miss names found in those folders."""
    image_stem, label_stem = IDX_FILES[split]
    folders = [root / sub if sub != "." else root for sub in LAYOUTS[name]]
    for folder in folders:
        images, labels = _find(folder, image_stem), _find(folder, label_stem)
        if images is not None and labels is not None:
            return images, labels
    expected = [root / LAYOUTS[name][0] / f"{s}[.gz]" for s in (image_stem, label_stem)]
    expected.append(root / f"{image_stem}[.gz] (flat folder)")
    expected.append(f"the same with a dot before idx ({file_names(image_stem)[2]})")
    near = [f"{p}{'/ (a folder)' if p.is_dir() else ''}" for p in near_misses(folders)]
    raise missing(name, root, expected, what=f"{split} IDX files", near=near)


def load_idx_dataset(name: str, root: Path, split: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N x 1 x 28 x 28 and int64 labels N of MNIST (`name="mnist"`) or Fashion-MNIST (`"fmnist"`)."""
    image_path, label_path = find_idx_files(name, root, split)
    spec = get_dataset_spec(name)
    cap = max(spec.n_train, spec.n_test)  # the header is checked against the spec before any data is read
    images = read_idx(image_path, ndim=3, item_shape=(28, 28), max_items=cap)
    labels = read_idx(label_path, ndim=1, max_items=cap).astype(np.int64)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{label_path}: {labels.shape[0]} labels but {image_path.name} has {images.shape[0]} images")
    images = images[:, None]
    check_arrays(images, labels, source=str(label_path), channels=1, size=28, num_classes=num_classes)
    check_content(name, images, labels, split, label_path.parent, root)
    return images, labels


def looks_like(images: np.ndarray, labels: np.ndarray, split: str) -> tuple[str, str] | None:
    """(dataset, why) when the arrays are recognisably MNIST or Fashion-MNIST, else None: the official first ten
    labels of the split, or (MNIST only) its pixel statistics: handwritten digits are mostly black (mean about
    0.13, about 80% zero pixels; Fashion-MNIST's mean is about 0.29)."""
    head = tuple(int(v) for v in labels[:10])
    for dataset, first in FIRST_LABELS.items():
        if head == first[split]:
            return dataset, f"its first labels are {', '.join(map(str, head))}, as in the official {DISPLAY[dataset]}"
    if images.shape[0] >= 100:
        sample = images[:: max(1, images.shape[0] // 2000)]  # spread over the file (it may be sorted by class)
        mean, zeros = float(sample.mean()) / 255, float((sample == 0).mean())
        if mean < 0.2 and zeros > 0.7:
            return "mnist", (
                f"its images are mostly black like handwritten digits (mean pixel {mean:.2f}, {zeros:.0%} zero pixels)"
            )
    return None


def check_content(name: str, images: np.ndarray, labels: np.ndarray, split: str, folder: Path, root: Path) -> None:
    """ValueError (one line) when `fmnist` found MNIST digits or `mnist` found Fashion-MNIST: they share the file
    names, so a flat folder of one is not silently read as the other. Only a recognisable mismatch is refused
    (own data in the IDX format load under either name); Fashion-MNIST is recognised by its labels only."""
    seen = looks_like(images, labels, split)
    if seen is None or seen[0] == name:
        return
    other, why = seen
    home = LAYOUTS[name][0]
    raise ValueError(
        f"{name}: the {split} IDX files in {folder} hold {DISPLAY[other]}, not {DISPLAY[name]} ({why}); "
        f"load them as --dataset {other}, or put the {DISPLAY[name]} files under {root / home} "
        f"(sspnet download {name} --data-root {root})"
    )
