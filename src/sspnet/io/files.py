"""Crash-safe file writing and run provenance.

Every file sspnet writes goes through `atomic_write`: a temporary file in the same folder, flushed and
fsynced, then renamed over the target, so a crash at any moment leaves either the old or the new file.
Modes are those a plain `open(path, "w")` gives: a new file gets 0666 less the process umask (0644 under the
usual umask 022; set umask 077 for private files), a replaced file keeps the mode it had. An OSError while
writing (ENOSPC, EROFS, EACCES, ...) names the target path and leaves the old file (or none) in place.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from sspnet._version import __version__


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _named(exc: OSError, path: Path) -> OSError:
    """`exc` with `path` as its filename when it has none (a failing write or fsync names no file)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))  # same subclass (errno)


def _mkstemp_like_open(path: Path) -> tuple[int, str]:
    """A new temporary file next to `path` with the mode `open(path, "w")` would leave: 0666 less the umask
    for a new file (O_CREAT applies the umask), the old file's mode when `path` exists (tempfile.mkstemp would
    give 0600 whatever the umask)."""
    try:
        keep = os.stat(path).st_mode & 0o7777
    except OSError:
        keep = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{os.urandom(5).hex()}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        if keep is not None and hasattr(os, "fchmod"):
            with contextlib.suppress(OSError):
                os.fchmod(fd, keep)
        return fd, tmp
    raise FileExistsError(f"no free temporary file name next to {path}")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call `write(f)` on a temporary binary file next to `path`, fsync it, then rename it to `path`.

    The file gets the mode a plain open() gives (module docstring). An OSError names `path`; nothing is left
    behind (the temporary file is removed, an existing `path` is untouched)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _mkstemp_like_open(path)
    except OSError as exc:
        raise _named(exc, path.parent) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _named(exc, path) from None
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save through `atomic_write` (serialised in memory first, so a failing save writes nothing)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line (e.g. to metrics.jsonl) and fsync it; a failed append (ENOSPC, ...) is cut off again, so
    the file never ends in half a line, and the OSError names `path`."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        with open(path, "ab") as f:
            start = f.tell()
            try:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    f.truncate(start)
                raise
    except OSError as exc:
        raise _named(exc, Path(path)) from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def git_hash() -> str | None:
    """The git commit of the sspnet source tree, or None when it is not a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """Versions and commit to store next to every result."""
    return {"sspnet_version": __version__, "torch_version": str(torch.__version__), "git_hash": git_hash()}
