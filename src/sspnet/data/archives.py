"""Safe extraction of .zip and .tar(.gz) archives.

Every member is checked before anything is written: absolute paths, drive letters, `..` components, names that
resolve outside the target folder (zip-slip / tar path traversal), links (symbolic or hard) whose target resolves
outside it, and device/fifo members are refused with ValueError naming the archive and the member.
Extraction goes to a temporary folder inside the target, then each top-level entry is moved into place.
"""
from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath


def _inside(base: Path, name: str, archive: Path, shown: Path | None = None) -> Path:
    shown = shown or base
    if not name or "\x00" in name:
        raise ValueError(f"{archive}: refusing member with an empty or invalid name {name!r}")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]) or ".." in pure.parts:
        raise ValueError(f"{archive}: refusing member {name!r}: it would be extracted outside {shown}")
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"{archive}: refusing member {name!r}: it would be extracted outside {shown}")
    return target


def check_zip(zf: zipfile.ZipFile, base: Path, archive: Path, shown: Path | None = None) -> None:
    for info in zf.infolist():
        _inside(base, info.filename, archive, shown)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ValueError(f"{archive}: refusing symbolic link member {info.filename!r}")


def check_tar(tf: tarfile.TarFile, base: Path, archive: Path, shown: Path | None = None) -> None:
    shown = shown or base
    for m in tf.getmembers():
        target = _inside(base, m.name, archive, shown)
        if m.issym() or m.islnk():
            link = m.linkname.replace("\\", "/")
            if PurePosixPath(link).is_absolute():
                raise ValueError(f"{archive}: refusing link {m.name!r} -> {m.linkname!r}: absolute target")
            start = target.parent if m.issym() else base
            resolved = (start / link).resolve()
            if resolved != base and base not in resolved.parents:
                raise ValueError(f"{archive}: refusing link {m.name!r} -> {m.linkname!r}: it points outside {shown}")
        elif not (m.isfile() or m.isdir()):
            raise ValueError(f"{archive}: refusing special member {m.name!r} (device, fifo or unknown type)")


def extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract a .zip / .tar / .tar.gz / .tgz archive into `dest` after checking every member.

    Returns the top-level paths created under dest. Existing entries of the same name are replaced.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=base))
    try:
        tmp_base = tmp.resolve()
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                check_zip(zf, tmp_base, archive, shown=base)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                check_tar(tf, tmp_base, archive, shown=base)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tf.extractall(tmp, **kwargs)
        else:
            raise ValueError(f"{archive}: not a zip or tar archive")
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
