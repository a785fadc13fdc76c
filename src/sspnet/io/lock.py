"""One process at a time per folder: the lock of a training run folder and of a comparison's output folder.

    with FolderLock("runs/ssp2", "sspnet train"):
        ...  # a second process gets FolderLockedError naming this one's PID

The lock is an advisory `flock` on FOLDER/.sspnet.lock, a file holding the holder's PID, host, command and start
time. The kernel drops the lock when the holder dies (however it dies: SIGKILL, OOM, power loss of a network
client aside), so a stale lock file left by a dead process is simply taken over; the file is removed on release.
Locks are per open file, so a second lock on the same folder in the same process is refused too. Where `fcntl`
is missing (Windows) the lock is an exclusively created file whose PID is checked for liveness.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    _HAS_FCNTL = False
else:
    _HAS_FCNTL = True

LOCK_FILE = ".sspnet.lock"


class FolderLockedError(RuntimeError):
    """Another live process holds the folder's lock. holder: what its lock file says (pid, host, command)."""

    def __init__(self, message: str, holder: dict[str, str]):
        super().__init__(message)
        self.holder = holder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _parse(text: str) -> dict[str, str]:
    """The 'key=value' lines of a lock file."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


class FolderLock:
    """An exclusive lock on `folder` for one process (`what`: the command, for the other process's message).

    `acquire()` creates the folder if needed (and `release()` removes it again when it was created here and is
    still empty) and raises FolderLockedError when a live process holds it. Usable as a context manager."""

    def __init__(self, folder: str | os.PathLike, what: str = "sspnet"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.what = what
        self._fd: int | None = None
        self._created = False

    def _content(self) -> bytes:
        return (
            f"pid={os.getpid()}\nhost={socket.gethostname()}\ncommand={self.what}\n"
            f"since={time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        ).encode()

    def _refuse(self, holder: dict[str, str]) -> FolderLockedError:
        pid, host = holder.get("pid", "?"), holder.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        since = f", since {holder['since']}" if holder.get("since") else ""
        cmd = holder.get("command") or "another sspnet process"
        return FolderLockedError(
            f"{self.folder} is in use by {cmd} (PID {pid}{where}{since}); wait for it to finish or stop it, "
            f"or use another folder",
            holder,
        )

    def acquire(self) -> FolderLock:
        if self._fd is not None:
            return self
        if not self.folder.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created = True
        if not _HAS_FCNTL:  # pragma: no cover - Windows
            self._acquire_exclusive_file()
            return self
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                with open(fd, "rb", closefd=True) as f:
                    holder = _parse(f.read(4096).decode("utf-8", "replace"))
                raise self._refuse(holder) from None
            # the file may have been unlinked by a releasing holder between our open and flock: retry on the new one
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._content(), 0)
            self._fd = fd
            return self
        raise OSError(errno.EBUSY, "could not take the lock (it keeps changing)", str(self.path))

    def _acquire_exclusive_file(self) -> None:  # pragma: no cover - Windows
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _parse(self.path.read_text(encoding="utf-8", errors="replace"))
                pid = holder.get("pid", "")
                if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # stale: its holder is dead
                    continue
                raise self._refuse(holder) from None
            os.write(fd, self._content())
            self._fd = fd
            return
        raise self._refuse({})

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # before unlocking: a waiting process then retries on a new file
        with contextlib.suppress(OSError):
            os.close(self._fd)  # closing drops the flock
        self._fd = None
        if self._created:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only when still empty
            self._created = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:  # a lock object dropped without release(): do not keep the folder locked
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
