"""TinyImageNet-200 from its official folder, decoded once with Pillow and cached as uint8 .npy files.

Layout (`root/tiny-imagenet-200/` or `root` itself): `wnids.txt` (200 WordNet ids),
`train/<wnid>/images/*.JPEG` (500 per class), `val/images/*.JPEG` + `val/val_annotations.txt`
(file name, wnid, box). The "test" split is the labelled val set (10,000 images). Label = index of the wnid in
the sorted wnid list (torchvision ImageFolder's convention). Images are 64 x 64; greyscale ones become RGB.

Cache: `<base>/.sspnet-cache/{split}.images.npy` (uint8 N x 3 x 64 x 64), `{split}.labels.npy` (int64 N) and
`{split}.json` holding a fingerprint of the source (relative path, size and mtime of every file read). A changed,
added or removed source file changes the fingerprint and the cache is rebuilt. Loaded with allow_pickle=False.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sspnet.data._common import check_arrays, missing
from sspnet.io.files import atomic_write, atomic_write_json

FOLDER = "tiny-imagenet-200"
SIZE = 64
CACHE_DIR = ".sspnet-cache"
CACHE_VERSION = 1
_SUFFIXES = {".jpeg", ".jpg", ".png"}


def find_tiny_base(root: Path) -> Path:
    for base in (root / FOLDER, root):
        if (base / "wnids.txt").is_file():
            return base
    raise missing("tiny", root, [root / FOLDER / "wnids.txt", root / "wnids.txt"], what="TinyImageNet folder")


def read_wnids(base: Path) -> list[str]:
    wnids = [w.strip() for w in (base / "wnids.txt").read_text().split() if w.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise ValueError(
            f"{base / 'wnids.txt'}: expected distinct WordNet ids, one per line; found {len(wnids)} "
            f"({len(set(wnids))} distinct)"
        )
    return sorted(wnids)


def list_split(base: Path, split: str) -> tuple[list[Path], list[int], list[Path]]:
    """(image paths, labels, metadata files) of a split, in a fixed order."""
    wnids = read_wnids(base)
    index = {w: i for i, w in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            folder = base / "train" / wnid / "images"
            if not folder.is_dir():
                raise missing("tiny", base.parent, [folder], what=f"train images of class {wnid}")
            names = sorted(e.name for e in os.scandir(folder) if Path(e.name).suffix.lower() in _SUFFIXES)
            paths += [folder / n for n in names]
            labels += [index[wnid]] * len(names)
        return paths, labels, [base / "wnids.txt"]
    ann = base / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise missing("tiny", base.parent, [ann, base / "val" / "images"], what="val (test) annotations")
    for lineno, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            raise ValueError(f"{ann}: line {lineno}: expected 'FILE<TAB>WNID...', found {line!r}")
        if fields[1] not in index:
            raise ValueError(f"{ann}: line {lineno}: labels out of range: wnid {fields[1]!r} is not in wnids.txt")
        paths.append(base / "val" / "images" / fields[0])
        labels.append(index[fields[1]])
    return paths, labels, [base / "wnids.txt", ann]


def fingerprint(base: Path, paths: list[Path], meta: list[Path]) -> str:
    """sha256 over (relative path, size, mtime_ns) of every source file."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}\n".encode())
    for p in list(meta) + list(paths):
        try:
            st = p.stat()
        except FileNotFoundError:
            raise missing("tiny", base.parent, [p], what="image file listed in the annotations") from None
        digest.update(f"{p.relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _open_image(path: Path):
    """The image, opened lazily (header only). JPEG and PNG go straight to their Pillow plugin, which reads the size
    from the header without `Image.open`'s decompression-bomb check (an error or a warning for a huge claimed
    size): the caller refuses any size but 64 x 64 before a pixel is decoded."""
    from PIL import Image, JpegImagePlugin, PngImagePlugin

    with open(path, "rb") as f:
        magic = f.read(8)
    if magic[:3] == b"\xff\xd8\xff":
        return JpegImagePlugin.JpegImageFile(str(path))
    if magic == b"\x89PNG\r\n\x1a\n":
        return PngImagePlugin.PngImageFile(str(path))
    return Image.open(path)


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with _open_image(path) as img:
            size = img.size
            if size == (SIZE, SIZE):
                arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # a format other than JPEG / PNG claiming a huge size
        raise ValueError(f"{path}: wrong image size, expected {SIZE}x{SIZE} ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"{path}: cannot decode image ({exc})") from None
    if size != (SIZE, SIZE):
        raise ValueError(f"{path}: wrong image size {size[0]}x{size[1]}, expected {SIZE}x{SIZE}")
    return arr.transpose(2, 0, 1)


def decode_all(paths: list[Path], workers: int | None = None) -> np.ndarray:
    """uint8 N x 3 x 64 x 64 from image files (Pillow, in threads: decoding releases the GIL)."""
    out = np.empty((len(paths), 3, SIZE, SIZE), dtype=np.uint8)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, arr in enumerate(pool.map(_decode, paths)):
            out[i] = arr
    return out


def _cache_files(base: Path, split: str) -> tuple[Path, Path, Path]:
    folder = base / CACHE_DIR
    return folder / f"{split}.images.npy", folder / f"{split}.labels.npy", folder / f"{split}.json"


def _read_cache(base: Path, split: str, fp: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    img_f, lab_f, meta_f = _cache_files(base, split)
    try:
        meta = json.loads(meta_f.read_text())
        if meta.get("fingerprint") != fp or meta.get("version") != CACHE_VERSION:
            return None
        images = np.load(img_f, allow_pickle=False)
        labels = np.load(lab_f, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if images.shape != (n, 3, SIZE, SIZE) or images.dtype != np.uint8 or labels.shape != (n,):
        return None
    return images, labels.astype(np.int64, copy=False)


def _write_cache(base: Path, split: str, fp: str, images: np.ndarray, labels: np.ndarray) -> None:
    img_f, lab_f, meta_f = _cache_files(base, split)

    def npy(arr: np.ndarray):
        return lambda f: np.save(f, arr, allow_pickle=False)

    try:
        atomic_write(img_f, npy(images))
        atomic_write(lab_f, npy(labels))
        atomic_write_json(meta_f, {"version": CACHE_VERSION, "fingerprint": fp, "n": int(len(labels))})
    except OSError as exc:
        warnings.warn(f"could not write the TinyImageNet cache in {img_f.parent}: {exc}", stacklevel=3)


def load_tiny(root: Path, split: str, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N x 3 x 64 x 64 and int64 labels N of TinyImageNet ("test" = the labelled val set)."""
    base = find_tiny_base(root)
    paths, labels_list, meta = list_split(base, split)
    if not paths:
        raise ValueError(f"{base}: no {split} images found (expected *.JPEG files)")
    fp = fingerprint(base, paths, meta)
    if cache:
        hit = _read_cache(base, split, fp, len(paths))
        if hit is not None:
            return hit
    images = decode_all(paths)
    labels = np.asarray(labels_list, dtype=np.int64)
    check_arrays(images, labels, source=str(base), channels=3, size=SIZE, num_classes=len(read_wnids(base)))
    if cache:
        _write_cache(base, split, fp, images, labels)
    return images, labels
