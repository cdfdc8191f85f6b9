"""How the demo's output looks: a heading per step, labelled lines, aligned numbers, plain text.

The formatting functions are pure; :class:`Console` only decides where lines go and whether the
progress of a running cycle rewrites one terminal line or prints a line every few pages (for a
log, where carriage returns would pile up).
"""

from __future__ import annotations

import sys
import textwrap
from typing import TextIO

from incsync.errors import IncsyncError
from incsync.humanize import plural
from incsync.protocols import ProgressCallback
from incsync.results import CycleProgress, CycleResult
from incsync.status import SourceStatus
from incsync.views import ASCII_SYMBOLS, SYMBOLS

__all__ = [
    "CheckFailedError",
    "Console",
    "progress_line",
    "result_line",
    "status_line",
]

_LABEL_WIDTH = 10
_WRAP = 110


class CheckFailedError(IncsyncError):
    """A check of the demo found the product misbehaving; ``make demo`` then fails."""


def progress_line(progress: CycleProgress) -> str:
    """Return one line of a running cycle's progress: pages, records and rate, aligned."""
    total = f" of {progress.total:,}" if progress.total is not None else ""
    return (
        f"    page {progress.pages:>4}  {progress.fetched:>8,} records{total}  "
        f"{progress.rate:>8,.0f} records/s"
    )


def result_line(result: CycleResult) -> str:
    """Return what a cycle did in one line (and its error on a second one)."""
    if result.outcome.skipped:
        return f"{result.outcome.value}: no request was sent and nothing was written"
    line = (
        f"{result.outcome.value}: {result.fetched:,} fetched, {result.applied:,} applied, "
        f"{result.already_applied:,} already applied, {result.rejected:,} set aside; "
        f"{plural(result.pages, 'page')} in {result.duration.total_seconds():.2f} s"
    )
    if result.error:
        line += f"\nerror: {result.error_class}: {result.error}"
    return line


def status_line(status: SourceStatus, *, unicode: bool = True) -> str:
    """Return the status as the table shows it: symbol, colour and label."""
    symbol = (SYMBOLS if unicode else ASCII_SYMBOLS)[status.icon]
    return f"{symbol} {status.color.value:<6} {status.label}"


def _can_encode(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None)
    if encoding is None:  # an in-memory text stream holds any text
        return True
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class Console:
    """Writes the demo's output to a stream (standard output by default).

    Args:
        stream: Where to write.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self.tty = self._stream.isatty()
        self.unicode = _can_encode(self._stream, "".join(SYMBOLS.values()))
        self._progress_open = False

    def say(self, text: str = "") -> None:
        """Write ``text`` and a newline, ending a progress line first."""
        if self._progress_open:
            self._stream.write("\n")
            self._progress_open = False
        if not self.unicode:
            # Hover texts and source data may hold characters the stream cannot encode.
            encoding = self._stream.encoding
            text = text.encode(encoding, "replace").decode(encoding)
        self._stream.write(text + "\n")
        self._stream.flush()

    def heading(self, text: str) -> None:
        """Start a step."""
        self.say()
        self.say(f"== {text}")

    def subheading(self, text: str) -> None:
        """Start a part of a step."""
        self.say()
        self.say(f"  -- {text}")

    def item(self, label: str, text: str) -> None:
        """Write a labelled line, wrapped to the page width and indented under its first line.

        Each line of ``text`` starts a new line; long ones are wrapped between words, never inside
        one, so URLs and JSON stay whole and can be copied.
        """
        width = _WRAP - _LABEL_WIDTH - 3
        lines = [
            wrapped
            for line in text.splitlines() or [""]
            for wrapped in textwrap.wrap(
                line, width, break_long_words=False, break_on_hyphens=False
            )
            or [""]
        ]
        self.say(f"  {label:<{_LABEL_WIDTH}} {lines[0]}")
        for line in lines[1:]:
            self.say(" " * (_LABEL_WIDTH + 3) + line)

    def cycle(self, result: CycleResult) -> None:
        """Write what a cycle did."""
        self.item("cycle", result_line(result))

    def status_text(self, status: SourceStatus) -> str:
        """Return the status as :func:`status_line` writes it for this stream."""
        return status_line(status, unicode=self.unicode)

    def status(self, status: SourceStatus, *, hover: bool = False) -> None:
        """Write a source's status, and the hover text a person would read when asked."""
        self.item("status", self.status_text(status))
        if hover:
            self.item("hover", status.hover)

    def check(self, passed: bool, text: str, *, failure: str = "") -> None:
        """Write a verified fact; stop the demo when it is false.

        Raises:
            CheckFailedError: ``passed`` is false.
        """
        if passed:
            self.item("check", f"ok: {text}")
            return
        detail = f" ({failure})" if failure else ""
        self.item("check", f"FAILED: {text}{detail}")
        raise CheckFailedError(f"the demo's check failed: {text}{detail}")

    def progress(self, every: int) -> ProgressCallback:
        """Return a progress callback: one rewritten line on a terminal, else one per ``every``."""

        def report(progress: CycleProgress) -> None:
            line = progress_line(progress)
            if self.tty:
                self._stream.write("\r" + line)
                self._stream.flush()
                self._progress_open = True
            elif progress.pages % every == 0:
                self.say(line)

        return report
