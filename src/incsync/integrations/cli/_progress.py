"""Progress of running cycles: a live display on a terminal, plain log lines anywhere else.

The engine reports a :class:`~incsync.results.CycleProgress` after every durable page. On a
terminal, when one cycle runs at a time, that becomes a bar drawn by rich when it is installed (it
measures the terminal, redraws in place and knows when colour is wanted), or else one line
rewritten after a carriage return; when cycles run side by side, one status line names each
running cycle and how far it got, and result lines are printed above it. Anywhere else (a pipe, a
file, a service's journal) a redrawn line is noise, so each cycle writes a full line at most every
``interval`` seconds. A :class:`ProgressBoard` owns both streams for the whole run, so lines from
concurrent cycles never interleave mid-line.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import IO, Any, Protocol

from incsync.humanize import plural
from incsync.results import CycleProgress

__all__ = [
    "ProgressBoard",
    "ProgressDisplay",
    "progress_board",
    "progress_display",
    "progress_text",
    "rich_available",
]


class ProgressDisplay(Protocol):
    """Shows one cycle's progress; made per cycle and closed when the cycle ends."""

    def update(self, progress: CycleProgress) -> None:
        """Show the progress after a durable page."""

    def close(self) -> None:
        """End the display, leaving the terminal at the start of a fresh line."""


def _clock_text(duration: timedelta) -> str:
    seconds = max(round(duration.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_text(progress: CycleProgress) -> str:
    """Return one line saying how far a cycle got: pages, records, rate and (if known) ETA.

    Args:
        progress: What the engine reported.

    Returns:
        For example ``"acme: page 12, 6,000/20,000 records, 1,250 records/s, ETA 0:11"``.
    """
    if progress.total is None:
        records = plural(progress.fetched, "record")
    else:
        # "3/20 records": the noun agrees with the total, the number it stands after.
        records = f"{progress.fetched:,}/{plural(progress.total, 'record')}"
    eta = progress.eta
    tail = f", ETA {_clock_text(eta)}" if eta is not None else ""
    return (
        f"{progress.source_key}: page {progress.pages:,}, {records}, "
        f"{progress.rate:,.0f} records/s{tail}"
    )


class _Writer(Protocol):
    """Where whole lines go: a text stream, or one that writes under a lock."""

    def write(self, text: str, /) -> int:
        """Write ``text``."""

    def flush(self) -> None:
        """Flush what was written."""


class _LogLines:
    """Whole lines, the first page's and then at most one per ``interval`` seconds."""

    def __init__(
        self, stream: _Writer, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._last: float | None = None

    def update(self, progress: CycleProgress) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return
        self._last = now
        self._stream.write(progress_text(progress) + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Nothing to end: every line was complete."""


class _CarriageLine:
    """One line rewritten in place (carriage return), for terminals when rich is not installed."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._width = 0

    def update(self, progress: CycleProgress) -> None:
        text = progress_text(progress)
        # Pad with spaces so a shorter line fully covers the longer one before it.
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)

    def close(self) -> None:
        if self._width:
            self._stream.write("\n")
            self._stream.flush()


class _RichBar:
    """A rich progress bar; indeterminate until the source says how many records there are."""

    def __init__(self, stream: IO[str], key: str) -> None:
        from rich.console import Console  # rich is an optional extra: imported on use
        from rich.progress import BarColumn, Progress, TextColumn

        self._progress = Progress(
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            console=Console(file=stream),
            transient=False,
        )
        self._task = self._progress.add_task(key, total=None, detail=f"{key}: starting")
        self._progress.start()

    def update(self, progress: CycleProgress) -> None:
        self._progress.update(
            self._task,
            completed=progress.fetched,
            total=progress.total,
            detail=progress_text(progress),
        )

    def close(self) -> None:
        self._progress.stop()


def rich_available() -> bool:
    """Return whether the optional ``rich`` package can be imported."""
    try:
        import rich  # noqa: F401 - only asking whether it is installed
    except ImportError:
        return False
    return True


def progress_display(stream: IO[str], key: str, *, interval: float) -> ProgressDisplay:
    """Return the display that suits ``stream``: a bar or line on a terminal, log lines elsewhere.

    Args:
        stream: Where progress goes (standard error).
        key: The source whose cycle it follows.
        interval: Seconds between two log lines when ``stream`` is not a terminal.

    Returns:
        A fresh display for one cycle.
    """
    if not _is_terminal(stream):
        return _LogLines(stream, interval)
    if rich_available():
        return _RichBar(stream, key)
    return _CarriageLine(stream)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


class ProgressBoard(Protocol):
    """The run's output: a progress display per running cycle, and each finished cycle's result."""

    def cycle(self, key: str) -> ProgressDisplay:
        """Return the display of a cycle of ``key`` that starts now (called from its thread)."""

    def result(self, text: str) -> None:
        """Print a finished cycle's result lines on standard output."""

    def note(self, text: str) -> None:
        """Print a notice line on standard error (a wait, a stop request)."""

    def close(self) -> None:
        """End the display, leaving the terminal at the start of a fresh line."""


class _LockedStream:
    """Writes whole texts under the board's lock, so concurrent lines never interleave."""

    def __init__(self, stream: IO[str], lock: threading.Lock) -> None:
        self._stream = stream
        self._lock = lock

    def write(self, text: str) -> int:
        with self._lock:
            written = self._stream.write(text)
            self._stream.flush()
            return written

    def flush(self) -> None:
        """Nothing left: every write was flushed."""


class _Lines:
    """Off a terminal, or on one while a single cycle runs at a time: one display per cycle."""

    def __init__(self, out: IO[str], err: IO[str], interval: float) -> None:
        self._lock = threading.Lock()
        self._out = _LockedStream(out, self._lock)
        self._err = err
        self._interval = interval

    def cycle(self, key: str) -> ProgressDisplay:
        if not _is_terminal(self._err):
            return _LogLines(self._out_err(), self._interval)
        return progress_display(self._err, key, interval=self._interval)

    def _out_err(self) -> _LockedStream:
        return _LockedStream(self._err, self._lock)

    def result(self, text: str) -> None:
        self._out.write(text + "\n")

    def note(self, text: str) -> None:
        self._out_err().write(text + "\n")

    def close(self) -> None:
        """Nothing to end: every display was closed with its cycle."""


class _StatusLine:
    """On a terminal while cycles run side by side: one line naming each and how far it got."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self._out = out
        self._err = err
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}
        self._width = 0

    def cycle(self, key: str) -> ProgressDisplay:
        self._set(key, f"{key}: starting")
        return _StatusEntry(self, key)

    def _set(self, key: str, text: str | None) -> None:
        with self._lock:
            if text is None:
                self._running.pop(key, None)
            else:
                self._running[key] = text
            self._draw()

    def _draw(self) -> None:
        texts = list(self._running.values())
        if not texts:
            self._clear()
            return
        line = f"{len(texts)} running: {' | '.join(texts)}"
        # A line longer than the terminal wraps, and \r then redraws only its last part.
        columns = shutil.get_terminal_size(fallback=(80, 24)).columns
        line = line[: max(columns - 1, 1)]
        self._err.write("\r" + line.ljust(self._width))
        self._err.flush()
        self._width = len(line)

    def _clear(self) -> None:
        if self._width:
            self._err.write("\r" + " " * self._width + "\r")
            self._err.flush()
            self._width = 0

    def _print(self, stream: IO[str], text: str) -> None:
        with self._lock:
            self._clear()
            stream.write(text + "\n")
            stream.flush()
            self._draw()

    def result(self, text: str) -> None:
        self._print(self._out, text)

    def note(self, text: str) -> None:
        self._print(self._err, text)

    def close(self) -> None:
        with self._lock:
            self._running.clear()
            self._clear()


class _StatusEntry:
    """One cycle's part of the status line."""

    def __init__(self, board: _StatusLine, key: str) -> None:
        self._board = board
        self._key = key

    def update(self, progress: CycleProgress) -> None:
        self._board._set(self._key, progress_text(progress))

    def close(self) -> None:
        self._board._set(self._key, None)


def progress_board(
    out: IO[str], err: IO[str], *, interval: float, side_by_side: bool
) -> ProgressBoard:
    """Return the board that suits the streams and how many cycles may run at once.

    Args:
        out: Standard output, for results.
        err: Standard error, for progress and notices.
        interval: Seconds between two progress lines of a cycle when ``err`` is not a terminal.
        side_by_side: Whether more than one cycle may run at once.

    Returns:
        Plain lines off a terminal; on one, a bar or line per cycle when cycles run one at a
        time, else one shared status line.
    """
    if side_by_side and _is_terminal(err):
        return _StatusLine(out, err)
    return _Lines(out, err, interval)
