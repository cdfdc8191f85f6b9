"""Progress of running cycles: rich's live bars on a terminal, plain log lines anywhere else.

The engine reports a :class:`~incsync.results.CycleProgress` after every durable page. A
:class:`ProgressBoard` owns the run's output: each cycle's progress, each finished cycle's result
on standard output, and notices on standard error.

* **Standard error is a terminal**: one rich display (``rich.progress``, the ``cli`` extra) holds a
  bar per running cycle, however many run side by side; rich measures the terminal, redraws in
  place and honours ``NO_COLOR``. A bar fills out of the read's total when the source says how
  many records it holds, and its text says pages, records (``done/total``), rate and the time
  left. Result lines, notices and the ``-v`` log are printed above the bars, and a cycle's bar
  goes when the cycle ends: its result line says how.
* **Anywhere else** (a pipe, a file, a service's journal, a dumb terminal) a redrawn line is
  noise, or cannot be drawn: each cycle writes a whole line, its first page's and then at most
  one every ``interval`` seconds, under one lock, so lines of concurrent cycles never interleave
  mid-line.

Standard output stays plain whatever standard error is: results go there as written, unless it is
a terminal too, where they are printed above the bars so as not to tear them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any, Protocol

from incsync.humanize import plural
from incsync.results import CycleProgress
from incsync.views import terminal_safe

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["ProgressBoard", "ProgressDisplay", "progress_board", "progress_text"]


class ProgressDisplay(Protocol):
    """Shows one cycle's progress; made per cycle and closed when the cycle ends."""

    def update(self, progress: CycleProgress) -> None:
        """Show the progress after a durable page."""

    def close(self) -> None:
        """End the display of this cycle."""


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
        f"{terminal_safe(progress.source_key)}: page {progress.pages:,}, {records}, "
        f"{progress.rate:,.0f} records/s{tail}"
    )


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


# -- anywhere but a terminal: whole lines --------------------------------------------------------


class _LockedStream:
    """Writes whole texts under the board's lock, so concurrent lines never interleave.

    The lock is re-entrant: the stop request's notice is written from a signal handler, which
    runs on the main thread, perhaps while that thread is writing a result under the lock.
    """

    def __init__(self, stream: IO[str], lock: threading.RLock) -> None:
        self._stream = stream
        self._lock = lock

    def write(self, text: str) -> None:
        with self._lock:
            self._stream.write(text)
            self._stream.flush()


class _LogLines:
    """One cycle's whole lines: the first page's, then at most one per ``interval`` seconds."""

    def __init__(
        self, stream: _LockedStream, interval: float, clock: Callable[[], float] = time.monotonic
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

    def close(self) -> None:
        """Nothing to end: every line was complete."""


class _Lines:
    """The board when standard error is not a terminal: plain lines on both streams."""

    def __init__(self, out: IO[str], err: IO[str], interval: float) -> None:
        lock = threading.RLock()
        self._out = _LockedStream(out, lock)
        self._err = _LockedStream(err, lock)
        self._interval = interval

    def cycle(self, key: str) -> ProgressDisplay:
        return _LogLines(self._err, self._interval)

    def result(self, text: str) -> None:
        self._out.write(text + "\n")

    def note(self, text: str) -> None:
        self._err.write(text + "\n")

    def close(self) -> None:
        """Nothing to end: every line was complete."""


# -- on a terminal: rich's bars ------------------------------------------------------------------


class _Bar:
    """One cycle's task in the board's rich display; indeterminate until a total is known."""

    def __init__(self, progress: Progress, key: str) -> None:
        self._progress = progress
        self._task: TaskID = progress.add_task(key, total=None, detail=f"{key}: starting")

    def update(self, progress: CycleProgress) -> None:
        self._progress.update(
            self._task,
            completed=progress.fetched,
            total=progress.total,
            detail=progress_text(progress),
        )

    def close(self) -> None:
        # The result line, printed next, says how the cycle ended; its bar has nothing to add.
        self._progress.remove_task(self._task)
        self._progress.refresh()


class _Bars:
    """The board when standard error is a terminal: rich's live bars, lines printed above them.

    While it is drawn, ``sys.stderr`` is rich's stand-in, which prints above the bars too: the
    ``-v`` log writes there. Standard output is left alone, as it may be a pipe.
    """

    def __init__(self, out: IO[str], console: Console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self._out = out
        self._out_terminal = _is_terminal(out)
        self._progress = Progress(
            BarColumn(),
            # Not markup: a key or a count holding "[...]" is text, never a style.
            TextColumn("{task.fields[detail]}", markup=False),
            console=console,
            redirect_stdout=False,
        )
        self._progress.start()

    def cycle(self, key: str) -> ProgressDisplay:
        return _Bar(self._progress, terminal_safe(key))

    def _above(self, text: str) -> None:
        from rich.text import Text

        self._progress.console.print(Text(text))

    def result(self, text: str) -> None:
        if self._out_terminal:
            # The same screen as the bars: written straight there it would tear them.
            self._above(text)
        else:
            self._out.write(text + "\n")
            self._out.flush()

    def note(self, text: str) -> None:
        self._above(text)

    def close(self) -> None:
        self._progress.stop()


def progress_board(out: IO[str], err: IO[str], *, interval: float) -> ProgressBoard:
    """Return the board that suits the streams: rich's bars on a terminal, else plain lines.

    Args:
        out: Standard output, for results.
        err: Standard error, for progress and notices.
        interval: Seconds between two progress lines of a cycle when ``err`` is not a terminal.

    Returns:
        The board of the whole run; close it at the end.
    """
    if _is_terminal(err):
        # Imported on use: the other commands, and runs off a terminal, never draw a bar.
        from rich.console import Console

        # soft_wrap: a long line (a log line, an error) wraps where the terminal wraps it, and
        # copies whole, instead of being cut into lines by rich.
        console = Console(file=err, soft_wrap=True, highlight=False, emoji=False, markup=False)
        # A dumb terminal cannot redraw: rich would show nothing until the end.
        if not console.is_dumb_terminal:
            return _Bars(out, console)
    return _Lines(out, err, interval)
