"""Safe extraction of .zip and .tar(.gz) archives: only regular files and folders, written by this module.

The official MNIST / CIFAR-10 / TinyImageNet archives hold nothing else, so every link (symbolic or hard), device,
fifo, sparse or unknown member is refused, as are absolute paths, drive letters and `..` components. All members
are checked (names, types, count, declared sizes) before anything is written; then each one is written by hand
(never `tarfile.extract`) into a fresh temporary folder inside the target: folders are created one component at
a time and must resolve (os.path.realpath) to exactly where they were meant to be, files are opened with
O_CREAT | O_EXCL | O_NOFOLLOW, and the member count and unpacked bytes are capped. Since no link is ever
created, no later member can be redirected outside the target (the long-path symlink trick of CVE-2025-4517 and
link chains have nothing to work with). Every refusal is one ValueError line naming the archive and the member;
the temporary folder is removed, so a refused archive leaves nothing behind. The top-level entries are then moved
into place.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

try:
    import lzma
    from lzma import LZMAError
except ImportError:  # pragma: no cover - Python built without lzma
    lzma, LZMAError = None, EOFError  # type: ignore[assignment,misc]
try:
    import bz2
except ImportError:  # pragma: no cover - Python built without bz2
    bz2 = None  # type: ignore[assignment]


MAX_MEMBERS = 250_000  # TinyImageNet-200 holds about 120,600 entries, CIFAR-10 8
MAX_BYTES = 2 << 30  # unpacked bytes; the official archives unpack to well under 1 GiB
CHUNK = 1 << 20
HEADER_BYTES = 1 << 20  # what tarfile may read for one member's headers (pax, GNU long names): a few KB in practice
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


def _parts(name: str, archive: Path, shown: Path) -> tuple[str, ...]:
    """The path components of a member name (`.` dropped); ValueError for a name that could leave the target."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"{archive}: refusing member with an empty or invalid name {name!r}")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]) or ".." in pure.parts:
        raise ValueError(f"{archive}: refusing member {name!r}: it would be extracted outside {shown}")
    return tuple(p for p in pure.parts if p not in ("", "."))


class _Writer:
    """Writes members under `root` (a fresh folder, given as its real path) by path components.

    Only real directories and regular files are ever created, so no path under root can contain a link; every
    directory is checked to resolve to exactly root/components (os.path.realpath) and every file is opened with
    O_CREAT | O_EXCL | O_NOFOLLOW, so neither a link nor an existing file is ever written through. Member count
    and unpacked bytes are capped."""

    def __init__(self, root: str, archive: Path, shown: Path, max_bytes: int, max_members: int) -> None:
        self.root, self.archive, self.shown = root, archive, shown
        self.max_bytes, self.max_members = max_bytes, max_members
        self.members = self.written = 0
        self.dirs: set[tuple[str, ...]] = {()}

    def refuse(self, name: str, why: str) -> ValueError:
        return ValueError(f"{self.archive}: refusing member {name!r}: {why}")

    def count(self, name: str, size: int = 0) -> None:
        """Count one member against the caps (declared size, before anything of it is written)."""
        self.members += 1
        if self.members > self.max_members:
            raise self.refuse(name, f"the archive holds more than {self.max_members} members")
        if size < 0 or self.written + size > self.max_bytes:
            raise self.refuse(name, f"the archive unpacks to more than {self.max_bytes} bytes")

    def directory(self, parts: tuple[str, ...], name: str) -> str:
        path = self.root
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            if parts[: i + 1] in self.dirs:
                continue
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            except OSError as exc:
                raise self.refuse(name, f"cannot create folder {part!r} ({exc.strerror or exc})") from None
            if os.path.islink(path) or not os.path.isdir(path) or os.path.realpath(path) != path:
                raise self.refuse(name, f"{'/'.join(parts[: i + 1])!r} is not a plain folder inside {self.shown}")
            self.dirs.add(parts[: i + 1])
        return path

    def file(self, parts: tuple[str, ...], name: str, src: BinaryIO, size: int) -> None:
        if not parts:
            raise self.refuse(name, "a file member needs a file name")
        path = os.path.join(self.directory(parts[:-1], name), parts[-1])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            raise self.refuse(name, "it appears twice in the archive (or clashes with a folder)") from None
        except OSError as exc:
            raise self.refuse(name, f"cannot create it ({exc.strerror or exc})") from None
        got = 0
        with os.fdopen(fd, "wb") as out:
            while True:
                block = src.read(CHUNK)
                if not block:
                    break
                got += len(block)
                if got > size:
                    raise self.refuse(name, f"it holds more than the {size} bytes its header declares")
                out.write(block)
        if got != size:
            raise self.refuse(name, f"truncated: {got} of the {size} bytes its header declares")
        self.written += got


def _tar_kind(m: tarfile.TarInfo) -> str:
    if m.type in _FILE_TYPES:
        return "file"
    if m.type == tarfile.DIRTYPE:
        return "dir"
    return "link" if m.issym() or m.islnk() else "special"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    kind = stat.S_IFMT(info.external_attr >> 16)  # Unix mode bits (0 from MS-DOS / Windows tools)
    if stat.S_ISLNK(kind):
        return "link"
    if info.is_dir() or stat.S_ISDIR(kind):
        return "dir"
    return "file" if kind in (0, stat.S_IFREG) else "special"


def _refuse_kind(kind: str, name: str, link: str | None, archive: Path) -> None:
    if kind == "link":
        target = f" -> {link!r}" if link is not None else " (symbolic link)"
        raise ValueError(
            f"{archive}: refusing link member {name!r}{target}: dataset archives hold only files and folders"
        )
    if kind == "special":
        raise ValueError(
            f"{archive}: refusing special member {name!r} (device, fifo, sparse or unknown type): "
            f"dataset archives hold only files and folders"
        )


class _MeteredStream:
    """The (decompressed) tar stream handed to tarfile, every read charged to `left`. tarfile reads pax and GNU
    long-name headers and GNU sparse maps whole before it returns a member, so a gzip stream of a few KB could make
    it allocate gigabytes; the caller grants HEADER_BYTES before each member's headers are read and the member's
    declared size before its data is copied, and a read beyond that is refused."""

    def __init__(self, raw: BinaryIO, archive: Path) -> None:
        self._raw, self._archive = raw, archive
        self.left, self.after = HEADER_BYTES, None

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.left:
            where = f"after member {self.after!r}" if self.after is not None else "before its first member"
            raise ValueError(
                f"{self._archive}: refusing the tar header {where}: it takes more than "
                f"{HEADER_BYTES} bytes (an oversized pax or long-name header, or a sparse map)"
            )
        data = self._raw.read(n)
        self.left -= len(data)
        return data

    def seek(self, *args: int) -> int:
        return self._raw.seek(*args)

    def tell(self) -> int:
        return self._raw.tell()


def _open_tar(archive: Path, stack: contextlib.ExitStack) -> tuple[tarfile.TarFile, _MeteredStream] | None:
    """The archive as a TarFile reading through a _MeteredStream (decompressed here: gzip, bz2 or xz by magic
    number), or None when it is not a tar."""
    with open(archive, "rb") as f:
        magic = f.read(6)
    openers = [
        (b"\x1f\x8b", gzip.open),
        (b"BZh", bz2.open if bz2 else None),
        (b"\xfd7zXZ\x00", lzma.open if lzma else None),
    ]
    opener = next((o for m, o in openers if magic.startswith(m) and o is not None), open)
    stream = _MeteredStream(stack.enter_context(opener(archive, "rb")), archive)
    try:
        return stack.enter_context(tarfile.open(fileobj=stream, mode="r:")), stream  # type: ignore[arg-type]
    except tarfile.ReadError:
        return None


def _members(tf: tarfile.TarFile, stream: _MeteredStream | None):
    """The members of tf in order, each one's headers read under a fresh HEADER_BYTES budget."""
    while True:
        if stream is not None:
            stream.left = HEADER_BYTES
        m = tf.next()
        if m is None:
            return
        if stream is not None:
            stream.after = m.name
        yield m


def check_tar(
    tf: tarfile.TarFile,
    archive: Path,
    shown: Path,
    max_bytes: int = MAX_BYTES,
    max_members: int = MAX_MEMBERS,
    stream: _MeteredStream | None = None,
) -> None:
    """Check every member of an open tar (names, types, count, declared sizes) before anything is written."""
    budget = _Writer("", archive, shown, max_bytes, max_members)
    for m in _members(tf, stream):
        _parts(m.name, archive, shown)
        kind = _tar_kind(m)
        _refuse_kind(kind, m.name, m.linkname, archive)
        budget.count(m.name, m.size if kind == "file" else 0)
        budget.written += m.size if kind == "file" else 0


def check_zip(
    zf: zipfile.ZipFile, archive: Path, shown: Path, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS
) -> None:
    """Check every member of an open zip (names, types, encryption, count, declared sizes)."""
    budget = _Writer("", archive, shown, max_bytes, max_members)
    for info in zf.infolist():
        _parts(info.filename, archive, shown)
        kind = _zip_kind(info)
        _refuse_kind(kind, info.filename, None, archive)
        if info.flag_bits & 0x1:
            raise ValueError(f"{archive}: refusing encrypted member {info.filename!r}")
        budget.count(info.filename, info.file_size if kind == "file" else 0)
        budget.written += info.file_size if kind == "file" else 0


def _extract_tar(tf: tarfile.TarFile, writer: _Writer, stream: _MeteredStream | None = None) -> None:
    for m in _members(tf, stream):
        parts, kind = _parts(m.name, writer.archive, writer.shown), _tar_kind(m)
        _refuse_kind(kind, m.name, m.linkname, writer.archive)
        writer.count(m.name, m.size if kind == "file" else 0)
        if kind == "dir":
            writer.directory(parts, m.name)
        else:
            if stream is not None:
                stream.left = m.size + 1  # tarfile reads one byte back when it moves to the next header
            src = tf.extractfile(m)
            assert src is not None  # a regular file member always has a data stream
            with src:
                writer.file(parts, m.name, src, m.size)


def _extract_zip(zf: zipfile.ZipFile, writer: _Writer) -> None:
    for info in zf.infolist():
        parts, kind = _parts(info.filename, writer.archive, writer.shown), _zip_kind(info)
        _refuse_kind(kind, info.filename, None, writer.archive)
        writer.count(info.filename, info.file_size if kind == "file" else 0)
        if kind == "dir":
            writer.directory(parts, info.filename)
        else:
            with zf.open(info) as src:
                writer.file(parts, info.filename, src, info.file_size)


def extract(
    archive: str | os.PathLike, dest: str | os.PathLike, *, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS
) -> list[Path]:
    """Extract a .zip / .tar / .tar.gz / .tgz archive into `dest` after checking every member.

    Only regular files and folders are extracted; links, devices and fifos are refused. Returns the top-level
    paths created under dest. Existing entries of the same name are replaced. Any refusal or a corrupt archive:
    ValueError, one line naming the archive and the member; nothing is left in dest.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = Path(os.path.realpath(dest))
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=base))
    try:
        writer = _Writer(os.path.realpath(tmp), archive, base, max_bytes, max_members)
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    check_zip(zf, archive, base, max_bytes, max_members)
                    _extract_zip(zf, writer)
            else:
                with contextlib.ExitStack() as stack:
                    opened = _open_tar(archive, stack)
                    if opened is None:
                        raise ValueError(f"{archive}: not a zip or tar archive")
                    check_tar(opened[0], archive, base, max_bytes, max_members, stream=opened[1])
                with contextlib.ExitStack() as stack:
                    tf, stream = _open_tar(archive, stack)  # type: ignore[misc]
                    _extract_tar(tf, writer, stream)
        except (
            tarfile.TarError,
            zipfile.BadZipFile,
            gzip.BadGzipFile,
            EOFError,
            zlib.error,
            LZMAError,
            NotImplementedError,
        ) as exc:
            raise ValueError(f"{archive}: corrupt or unreadable archive ({type(exc).__name__}: {exc})") from None
        created = []
        for entry in sorted(tmp.iterdir()):
            target = base / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
            created.append(target)
        return created
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
