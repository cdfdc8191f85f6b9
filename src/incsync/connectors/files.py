"""A connector for CSV and JSON Lines exports: one file, or a folder of files matching a glob.

Every row is a record: the configured id column, the updated-at column (ISO 8601 by default, or
epoch seconds / milliseconds, or a strftime pattern) and, optionally, a tombstone column whose
listed values mean deleted. A read returns the rows updated at or after the window's start, so
the connector is correct by that column alone. Files are streamed line by line in pages, never
loaded whole; utf-8 with or without a byte-order mark. A bad row (no id, an unreadable time, the
wrong number of columns, a line that is not a JSON object, invalid utf-8) is set aside with the
file name and line number in its reason, and the read goes on. A CSV file whose header lacks the
id or updated-at column fails the cycle: every row of it would be bad, and skipping it would
let the cursor pass its rows.

**Not reading what was already applied.** Files are appended to, rewritten and rotated, so the
connector remembers, per path, how far it read a file and what the file looked like then
(device and inode, size, modification time, digests of its first and of its last 4 KiB read).
A remembered read counts only once the engine has durably applied every page holding that file's
rows: the connector records it when the engine asks for the page after the last one holding them,
which it does only after committing that one. On the next incremental read:

* the same file, unchanged (same inode, size, mtime and digests), is skipped;
* the same file grown, with the part read before unchanged (same inode and digests), is read
  from where the last read stopped: only the appended rows;
* anything else (a new inode after a rotation or a write-by-rename, a smaller file, different
  digests, no memory of it) is read whole, filtered by the updated-at column.

Both shortcuts are safe because every row of the skipped part that the window asks for was
applied already (so returning it again would change nothing), and a full read (``Window()``,
after a reset or on a new store) always reads every file whole. An mtime within
``MTIME_GRANULARITY`` of the moment the file was read proves nothing (coarse filesystem clocks),
so such a file is read whole once more. The one change these checks cannot see is an in-place
rewrite that keeps the file's size, mtime and the fingerprinted bytes (a tool copying another
file over it with its timestamps); pass ``skip_unchanged=False`` where that can happen. Memory of
reads lives in the connector, or in ``manifest_path`` to survive restarts; changing the id or
updated-at column calls for a reset of the source.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Collection, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import attrs

from incsync.connectors._file_marks import (
    MTIME_GRANULARITY,
    FileMark,
    Plan,
    SeenFile,
    fingerprints,
    load_marks,
    plan_read,
    save_marks,
)
from incsync.connectors._formats import TimestampFormat
from incsync.connectors.base import BaseConnector
from incsync.cursor import Window
from incsync.errors import (
    ConfigurationError,
    PermanentSourceError,
    TransientSourceError,
)
from incsync.fields import DottedPath
from incsync.policy import non_negative_duration, positive_count
from incsync.records import Page, Record, RecordFormat, RejectedRecord, outcome_of

__all__ = ["MTIME_GRANULARITY", "FileConnector", "FileFormat", "FileMark", "Plan", "plan_read"]

logger = logging.getLogger("incsync.connectors")

FileFormat = Literal["csv", "jsonl"]
"""The formats read: comma-separated values with a header row, or one JSON object a line."""

# Bytes that are not utf-8 come through the decoder as lone surrogates (as with
# surrogateescape), and a count of such bytes tells the readers when rows need the check at all.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_ESCAPE = codecs.lookup_error("surrogateescape")
_undecodable_seen = [0]


def _count_and_escape(error: UnicodeError) -> tuple[str, int]:
    _undecodable_seen[0] += 1
    return cast("tuple[str, int]", _ESCAPE(error))  # decoding errors are replaced by text


codecs.register_error("incsync-files-escape", _count_and_escape)
_RAW_EXCERPT = 500


def _decoded(handle: BinaryIO, offset: int) -> io.TextIOWrapper:
    """Text from ``offset`` on; undecodable bytes become lone surrogates, found per row."""
    handle.seek(offset)
    encoding = "utf-8-sig" if offset == 0 else "utf-8"
    return io.TextIOWrapper(handle, encoding=encoding, errors="incsync-files-escape", newline="")


def _complete_end(handle: BinaryIO, start: int, end: int) -> int:
    """Return the offset after the last newline in ``[start, end)``, or ``start``.

    A last line without its newline may still be being written, so it is not counted as read.
    """
    position = end
    while position > start:
        size = min(64 * 1024, position - start)
        handle.seek(position - size)
        found = handle.read(size).rfind(b"\n")
        if found >= 0:
            return position - size + found + 1
        position -= size
    return start


class FileConnector(BaseConnector):
    """Reads CSV or JSON Lines files incrementally (see the module docstring).

    Implements :class:`~incsync.protocols.Connector`. Records are unordered across files, so the
    engine moves the cursor when a cycle completes.

    Args:
        path: One file, or a folder whose files matching ``pattern`` are read (not recursively
            unless the pattern says ``**/``).
        id_column: The column (CSV) or key (JSON Lines) holding the record id.
        updated_at_column: The column or key holding the last-update time.
        file_format: ``"csv"`` or ``"jsonl"``; taken from the suffix when omitted.
        pattern: The glob for a folder (``*.csv`` or ``*.jsonl`` by default).
        timestamp_format: ``"iso8601"`` (default), ``"epoch_seconds"``, ``"epoch_ms"`` or a
            strftime pattern (read as UTC unless it has ``%z``).
        assume_utc: Read ISO times without a zone as UTC.
        tombstone_column: The column whose values in ``tombstone_values`` mean deleted.
        tombstone_values: Those values, as text (JSON ``true`` is ``"true"``).
        delimiter: The CSV delimiter.
        page_size: Records per page.
        lookback: How far before the cursor each read starts again.
        skip_unchanged: Skip unchanged files and read only appended rows where safe.
        manifest_path: A JSON file remembering completed reads across restarts.

    Raises:
        ConfigurationError: A setting is invalid.
    """

    vendor = "files"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        id_column: str,
        updated_at_column: str,
        file_format: FileFormat | None = None,
        pattern: str | None = None,
        timestamp_format: str = "iso8601",
        assume_utc: bool = False,
        tombstone_column: str | None = None,
        tombstone_values: Collection[str] = ("true",),
        delimiter: str = ",",
        page_size: int = 1000,
        lookback: timedelta = timedelta(0),
        skip_unchanged: bool = True,
        manifest_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        if file_format is None:
            suffix = self.path.suffix.lower() if pattern is None else Path(pattern).suffix.lower()
            file_format = "jsonl" if suffix in (".jsonl", ".ndjson") else "csv"
        if file_format not in ("csv", "jsonl"):
            raise ConfigurationError(f"file_format must be 'csv' or 'jsonl', got {file_format!r}")
        if not id_column or not updated_at_column:
            raise ConfigurationError("id_column and updated_at_column must name columns")
        positive_count.check("page_size", page_size)
        non_negative_duration.check("lookback", lookback)
        if len(delimiter) != 1:
            raise ConfigurationError(f"delimiter must be one character, got {delimiter!r}")
        self.file_format: FileFormat = file_format
        self.pattern = pattern or ("*.jsonl" if file_format == "jsonl" else "*.csv")
        self.id_column = id_column
        self.updated_at_column = updated_at_column
        self.timestamp_format = TimestampFormat.from_spec(
            timestamp_format, "timestamp_format", assume_utc=assume_utc
        )
        # Column names are keys as they stand (a header may hold dots), not dotted paths.
        self.record_format = RecordFormat(
            DottedPath((id_column,)),
            DottedPath((updated_at_column,)),
            self.timestamp_format.parse,
        )
        self.tombstone_column = tombstone_column
        self.tombstone_values = frozenset(tombstone_values)
        self.delimiter = delimiter
        self.page_size = page_size
        self.ordered = False
        self.lookback = lookback
        self.skip_unchanged = skip_unchanged
        self.manifest_path = None if manifest_path is None else Path(manifest_path)
        self._marks: dict[str, FileMark] = (
            {} if self.manifest_path is None else load_marks(self.manifest_path)
        )

    def secrets(self) -> Sequence[str]:
        """Files carry no credentials."""
        return ()

    # -- reading -------------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Return the files to read now, in name order.

        Raises:
            PermanentSourceError: The path does not exist.
        """
        if self.path.is_file():
            return [self.path]
        if self.path.is_dir():
            return sorted(p for p in self.path.glob(self.pattern) if p.is_file())
        raise PermanentSourceError(
            f"files: {self.path} does not exist; check the path", vendor=self.vendor
        )

    def read(self, window: Window) -> Generator[Page, None, None]:
        """Yield pages of the rows updated at or after ``window.start``, bad rows set aside.

        Raises:
            PermanentSourceError: The path is missing, or a CSV header lacks a configured column.
            TransientSourceError: A file could not be read (an I/O error).
        """
        records: list[Record] = []
        rejected: list[RejectedRecord] = []
        ready: dict[str, FileMark] = {}  # files read through, remembered once applied
        room = page_size = self.page_size
        files = self.files()
        for file in files:
            for item in self._read_file(file, window, ready):
                if type(item) is Record:
                    records.append(item)
                else:
                    rejected.append(item)  # type: ignore[arg-type]  # the only other kind
                room -= 1
                if not room:
                    yield Page(records=records, rejected=rejected)
                    # Asked for more: the engine has committed that page.
                    self._remember(ready)
                    records, rejected, room = [], [], page_size
                    ready.clear()  # the file being read holds this dict: keep it
        if records or rejected:
            yield Page(records=records, rejected=rejected)
        self._remember(ready)
        # Forget files that are gone (rotated away, deleted), so the memory does not only grow.
        listed = {str(file.resolve()) for file in files}
        if not listed.issuperset(self._marks):
            self._marks = {key: mark for key, mark in self._marks.items() if key in listed}
            if self.manifest_path is not None:
                save_marks(self.manifest_path, self._marks)

    def _read_file(
        self, file: Path, window: Window, ready: dict[str, FileMark]
    ) -> Iterator[Record | RejectedRecord]:
        key = str(file.resolve())
        try:
            handle = file.open("rb")
        except FileNotFoundError:
            logger.warning("files: %s disappeared before it was read (rotated?)", file)
            return
        except OSError as error:
            raise TransientSourceError(
                f"files: cannot open {file}: {error.strerror}", vendor=self.vendor
            ) from None
        with handle:
            try:
                stat = os.fstat(handle.fileno())
                read_at_ns = time.time_ns()
                mark = self._marks.get(key) if self.skip_unchanged else None
                seen = None
                if mark is not None:
                    head, tail = fingerprints(handle, min(mark.size, stat.st_size))
                    seen = SeenFile(
                        stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, head, tail
                    )
                plan = plan_read(mark, seen, window)
                if plan == "skip":
                    return
                start = mark if plan == "append" and mark is not None else None
                offset, first_line = (0, 1) if start is None else (start.size, start.lines + 1)
                text = _decoded(handle, offset)
                try:
                    if self.file_format == "csv":
                        known = None if start is None else start.header
                        read = self._csv_rows(file, text, first_line, known, window.start)
                    else:
                        read = self._json_rows(file, text, first_line, window.start)
                    header, lines = yield from read
                finally:
                    text.detach()  # the handle is closed by its own with-block
                end = handle.tell()
                complete = _complete_end(handle, offset, end)
                head, tail = fingerprints(handle, complete)
            except OSError as error:
                raise TransientSourceError(
                    f"files: cannot read {file}: {error.strerror}", vendor=self.vendor
                ) from None
        ready[key] = FileMark(
            device=stat.st_dev,
            inode=stat.st_ino,
            size=complete,
            mtime_ns=stat.st_mtime_ns,
            read_at_ns=read_at_ns,
            head=head,
            tail=tail,
            # The lines read, less a last one still without its newline.
            lines=first_line - 1 + lines - (complete != end),
            header=header,
        )

    def _csv_rows(
        self,
        file: Path,
        text: Iterable[str],
        first_line: int,
        header: tuple[str, ...] | None,
        since: datetime | None,
    ) -> Generator[Record | RejectedRecord, None, tuple[tuple[str, ...] | None, int]]:
        """Yield a CSV file's rows; return its header and the number of lines read."""
        clean = _undecodable_seen[0]  # before the first byte is decoded
        reader = csv.reader(text, delimiter=self.delimiter, strict=True)
        base = first_line - 1  # reader.line_num counts the lines it consumed
        if header is None:
            first = next(reader, None)
            if first is None:
                return None, 0
            header = tuple(first)
            missing = [c for c in (self.id_column, self.updated_at_column) if c not in header]
            if missing:
                raise PermanentSourceError(
                    f"files: {file.name} line {first_line}: the header has no column "
                    f"{', '.join(map(repr, missing))}; fix the file or the connector's columns",
                    vendor=self.vendor,
                )
        width, join, to_record = len(header), "".join, self.to_record
        while True:
            line = base + reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return header, reader.line_num
            except csv.Error as error:
                yield _reject(file, line, f"unreadable CSV ({error})", None, "")
                continue
            if not row:
                continue  # a blank line
            if len(row) != width:
                yield _reject(file, line, f"expected {width} columns, got {len(row)}", None, row)
                continue
            raw = dict(zip(header, row, strict=True))
            if _undecodable_seen[0] != clean and _UNDECODABLE.search(join(row)):
                yield _reject(file, line, "invalid utf-8", None, raw)
                continue
            outcome = outcome_of(to_record, raw)
            if isinstance(outcome, RejectedRecord):
                yield _located(outcome, file, line)
            elif since is None or outcome.updated_at >= since:
                yield outcome

    def _json_rows(
        self, file: Path, text: Iterable[str], first_line: int, since: datetime | None
    ) -> Generator[Record | RejectedRecord, None, tuple[None, int]]:
        """Yield a JSON Lines file's rows; return no header and the number of lines read."""
        count, clean, to_record = 0, _undecodable_seen[0], self.to_record
        for count, line_text in enumerate(text, start=1):
            line = first_line + count - 1
            if not line_text.strip():
                continue
            if _undecodable_seen[0] != clean and _UNDECODABLE.search(line_text):
                yield _reject(file, line, "invalid utf-8", None, line_text)
                continue
            try:
                raw = json.loads(line_text)
            except (ValueError, RecursionError) as error:
                yield _reject(file, line, f"not JSON ({type(error).__name__})", None, line_text)
                continue
            if not isinstance(raw, dict):
                reason = f"expected a JSON object, got {type(raw).__name__}"
                yield _reject(file, line, reason, None, line_text)
                continue
            outcome = outcome_of(to_record, raw)
            if isinstance(outcome, RejectedRecord):
                yield _located(outcome, file, line)
            elif since is None or outcome.updated_at >= since:
                yield outcome
        return None, count

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether the row's tombstone column holds one of the tombstone values."""
        if self.tombstone_column is None:
            return False
        marker = raw.get(self.tombstone_column)
        if marker is None:
            return False
        if isinstance(marker, bool):  # JSON's true/false, compared as CSV spells them
            marker = "true" if marker else "false"
        return str(marker) in self.tombstone_values

    # -- memory of completed reads -------------------------------------------------------------

    def _remember(self, marks: Mapping[str, FileMark]) -> None:
        if marks:
            self._marks.update(marks)
            if self.manifest_path is not None:
                save_marks(self.manifest_path, self._marks)


def _located(rejected: RejectedRecord, file: Path, line: int) -> RejectedRecord:
    return attrs.evolve(rejected, reason=f"{file.name} line {line}: {rejected.reason}")


def _reject(
    file: Path, line: int, reason: str, record_id: str | None, raw: object
) -> RejectedRecord:
    excerpt = raw if isinstance(raw, str) else repr(raw)
    if len(excerpt) > _RAW_EXCERPT:
        excerpt = excerpt[:_RAW_EXCERPT] + "…"
    return RejectedRecord(
        record_id=record_id, reason=f"{file.name} line {line}: {reason}", raw=excerpt
    )
