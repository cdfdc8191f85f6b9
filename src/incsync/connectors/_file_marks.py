"""What the file connector remembers of each completed read, and the pure decision it drives.

See :mod:`incsync.connectors.files` for why skipping a file, or reading only what was appended
to it, is safe; this module holds the values, the decision and the manifest's I/O.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Literal

import attrs

from incsync.cursor import Window

__all__ = [
    "MTIME_GRANULARITY",
    "FileMark",
    "Plan",
    "SeenFile",
    "fingerprints",
    "load_marks",
    "plan_read",
    "save_marks",
]

logger = logging.getLogger("incsync.connectors")

Plan = Literal["skip", "append", "whole"]
"""How much of a file to read: nothing, what was appended since the last read, or all of it."""

MTIME_GRANULARITY = timedelta(seconds=2)
"""How close to a read an mtime may be before it proves nothing about later changes."""

_FINGERPRINT_BYTES = 4096


@attrs.frozen
class FileMark:
    """What a completed read of one file saw: where it stopped and what the file looked like.

    Args:
        device: The file's device number.
        inode: The file's inode number.
        size: The bytes read, to the end of the last complete line.
        mtime_ns: The file's modification time when the read began.
        read_at_ns: The wall-clock time when the read began.
        head: Digest of the first ``min(size, 4 KiB)`` bytes.
        tail: Digest of the last 4 KiB before ``size``.
        lines: The lines read (the next line's number, minus one).
        header: The CSV header, for reading appended rows.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    read_at_ns: int
    head: str
    tail: str
    lines: int
    header: tuple[str, ...] | None = None


@attrs.frozen
class SeenFile:
    """A file as it is now, to hold against its mark (digests taken over the mark's extent).

    Args:
        device: The file's device number.
        inode: The file's inode number.
        size: Its size now.
        mtime_ns: Its modification time now.
        head: Digest of its first ``min(mark.size, 4 KiB)`` bytes.
        tail: Digest of the last 4 KiB before ``mark.size``.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    head: str
    tail: str


def plan_read(mark: FileMark | None, seen: SeenFile | None, window: Window) -> Plan:
    """Decide how much of a file to read: nothing, what was appended, or all of it.

    Args:
        mark: The last completed read of the file, if any.
        seen: The file now, with digests taken over ``mark``'s extent (``None`` without a mark).
        window: The window asked for; a full window always reads every file whole.

    Returns:
        ``"skip"``, ``"append"`` or ``"whole"`` (see the module docstring for why each is safe).
    """
    if mark is None or seen is None or window.start is None:
        return "whole"
    same_prefix = (
        (seen.device, seen.inode) == (mark.device, mark.inode)
        and seen.size >= mark.size
        and (seen.head, seen.tail) == (mark.head, mark.tail)
    )
    racy = mark.mtime_ns >= mark.read_at_ns - MTIME_GRANULARITY // timedelta(microseconds=1) * 1000
    if not same_prefix or racy:
        return "whole"
    if seen.size == mark.size and seen.mtime_ns == mark.mtime_ns:
        return "skip"
    return "append"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def fingerprints(handle: BinaryIO, extent: int) -> tuple[str, str]:
    """Return digests of the first and of the last 4 KiB of a file's first ``extent`` bytes."""
    handle.seek(0)
    head = handle.read(min(extent, _FINGERPRINT_BYTES))
    start = max(0, extent - _FINGERPRINT_BYTES)
    handle.seek(start)
    tail = handle.read(extent - start)
    return _digest(head), _digest(tail)


def save_marks(path: Path, marks: Mapping[str, FileMark]) -> None:
    """Write ``marks`` to the manifest at ``path`` atomically; a failure is only logged.

    Only an optimisation is lost when the manifest cannot be written: files are read whole.
    """
    document = {name: attrs.asdict(mark) for name, mark in marks.items()}
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(document), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("files: cannot write %s: %s", path, error.strerror)


def load_marks(path: Path) -> dict[str, FileMark]:
    """Read the manifest at ``path``; a missing or unreadable one gives no marks (whole reads)."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: FileMark(
                **{
                    **fields,
                    "header": None if fields["header"] is None else tuple(fields["header"]),
                }
            )
            for name, fields in document.items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        logger.warning("files: ignoring %s (%s); files are read whole", path, error)
        return {}
