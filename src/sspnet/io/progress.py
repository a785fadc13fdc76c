"""Progress of long library calls (`sspnet.eval.evaluate`, `measure_growth`, `audit`) and the CLI's display.

The library calls take `progress=None` (silent) or a callable `progress(done, total, note)` (the type of that
argument: `ProgressCallback`): `done` of `total` work units (non-decreasing, `done == total` at the end; the
first call has `done == 0`), `note` a short description of the work in hand ("pgd eps 0.3: 200/1000 images").
The CLI passes a `ProgressLine`: one line on stderr, redrawn in place on a terminal (as train's progress bar)
and plain lines otherwise (log files), at most one every `interval` seconds, with elapsed time and the time
left (ETA) from the rate so far.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressCallback = Callable[[int, int, str], None] | None


def fmt_seconds(seconds: float | None, style: str = "clock") -> str:
    """The one duration formatter. style "clock" (progress lines): '0:42', '12:05', '1:02:03'; "words" (time
    estimates): '40 s', '13 min', '5.2 h', '3.1 days'. '?' for None, NaN or inf; negative times count as 0."""
    if style not in ("clock", "words"):
        raise ValueError(f"unknown duration style {style!r}; valid: clock, words")
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if style == "words":
        s, m = max(0.0, seconds), max(0.0, seconds) / 60
        return (
            f"{s:.0f} s"
            if s < 90
            else f"{m:.0f} min"
            if m < 120
            else f"{m / 60:.1f} h"
            if m < 2880
            else f"{m / 1440:.1f} days"
        )
    s = max(0, int(round(seconds)))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def report(progress: ProgressCallback, done: int, total: int, note: str = "") -> None:
    """progress(done, total, note) when a callback is given."""
    if progress is not None:
        progress(int(done), int(total), note)


def scaled(progress: ProgressCallback, offset: int, total: int, prefix: str = "") -> ProgressCallback:
    """A callback for one part of a larger job: the part's (done, part_total, note) is reported to `progress` as
    (offset + done, total, prefix + note). None when progress is None."""
    if progress is None:
        return None

    def part(done: int, part_total: int, note: str = "") -> None:
        progress(offset + int(done), total, prefix + note)

    return part


class ProgressLine:
    """`progress(done, total, note)` as one status line on `stream` (default stderr):

        sspnet attack: pgd eps 0.3: 300/1000 images | 30% | elapsed 0:38, left ~1:29

    On a terminal the line is redrawn in place (carriage return) at most every `interval` seconds (default 0.5)
    and ended with a newline when done; elsewhere plain lines at most every `interval` seconds (default 5). The
    first call and the last (done == total) always print. `close()` ends a line left open on a terminal.
    """

    def __init__(
        self,
        prefix: str,
        stream: TextIO | None = None,
        interval: float | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.prefix = prefix
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval = interval if interval is not None else (0.5 if tty else 5.0)
        self.clock = clock
        self.t0: float | None = None
        self.last: float | None = None
        self.width = 0
        self.open = False
        self.lines = 0  # lines shown (for tests)

    def line(self, done: int, total: int, note: str = "") -> str:
        """The status text at (done, total)."""
        now = self.clock()
        elapsed = now - (self.t0 if self.t0 is not None else now)
        what = note or f"{done}/{total}"
        pct = f"{100 * done / total:3.0f}%" if total > 0 else "  ?%"
        if done >= total > 0:
            left = "done"
        elif done > 0 and elapsed > 0:
            left = "left ~" + fmt_seconds(elapsed * (total - done) / done)
        else:
            left = "left ?"
        return f"{self.prefix}: {what} | {pct} | elapsed {fmt_seconds(elapsed)}, {left}"

    def __call__(self, done: int, total: int, note: str = "") -> None:
        now = self.clock()
        if self.t0 is None:
            self.t0 = now
        final = total > 0 and done >= total
        if self.last is not None and not final and now - self.last < self.interval:
            return
        self.last = now
        text = self.line(done, total, note)
        self.lines += 1
        if self.tty:
            pad = max(0, self.width - len(text))
            self.width = len(text)
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self.open = not final
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def progress_line(prefix: str, quiet: bool = False) -> ProgressLine | None:
    """The CLI's progress display on stderr; None (silent) with --quiet."""
    return None if quiet else ProgressLine(prefix)


__all__ = ["ProgressCallback", "ProgressLine", "fmt_seconds", "progress_line", "report", "scaled"]
