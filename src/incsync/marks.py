"""Marks: how far each side channel of a source has been read, kept apart from the cursor.

A source may have channels besides its main read, such as a log of deletions with its own
retention (QuickBooks' change data capture). Each keeps its own position, by name, in the source's
state; a connector receives them in its :class:`~incsync.cursor.Window` and returns new ones with
the :class:`~incsync.records.Page` that read that far, so they are checkpointed only once that page
is durable. A quiet main read never holds a channel back, and the reverse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from incsync.errors import ConfigurationError
from incsync.timestamps import ensure_utc, from_micros, to_micros

__all__ = [
    "PARTITION_MARK",
    "Marks",
    "finished_read_marks",
    "forward_marks",
    "frozen_marks",
    "marks_from_text",
    "marks_text",
    "rewound_marks",
]

Marks = Mapping[str, datetime]
"""How far each side channel of a source has been read, by name (``{"deletes": t}``)."""


PARTITION_MARK = "partition:"
"""How the marks that keep a full read's time partitions begin (see :mod:`incsync.partitions`).

They belong to one full read: a completed cycle forgets them (:func:`finished_read_marks`).
"""


def finished_read_marks(marks: Marks) -> Marks:
    """Return ``marks`` without those of a full read's partitions: the read they kept is over."""
    return frozen_marks({n: t for n, t in marks.items() if not n.startswith(PARTITION_MARK)})


def frozen_marks(value: Mapping[str, datetime]) -> Marks:
    """Return ``value`` as a read-only mapping of names to aware UTC times, sorted by name.

    Raises:
        NaiveDatetimeError: A time is naive.
        ConfigurationError: A name is empty.
    """
    checked: dict[str, datetime] = {}
    for name in sorted(value):
        if not name:
            raise ConfigurationError(f"a mark needs a non-empty name, got {name!r}")
        checked[name] = ensure_utc(value[name], f"mark {name!r}")
    return MappingProxyType(checked)


def forward_marks(current: Marks, proposed: Marks) -> Marks:
    """Return ``current`` with each of ``proposed`` taken where it is later: marks never go back."""
    if not proposed:
        return current
    merged = dict(current)
    for name, moment in proposed.items():
        if name not in merged or moment > merged[name]:
            merged[name] = moment
    return frozen_marks(merged)


def rewound_marks(current: Marks, since: datetime) -> Marks:
    """Return ``current`` with each mark later than ``since`` moved back to it.

    Only a rewind of the source (:func:`incsync.state.rewind`) moves marks back: the host asked
    for everything since that time to be read again, side channels included.

    Raises:
        NaiveDatetimeError: ``since`` has no timezone.
    """
    since = ensure_utc(since, "since")
    return frozen_marks({name: min(moment, since) for name, moment in current.items()})


def marks_text(marks: Marks) -> str:
    """Return marks as the stores keep them: JSON of each name's microseconds since the epoch."""
    return json.dumps({name: to_micros(moment) for name, moment in marks.items()}, sort_keys=True)


def marks_from_text(text: str) -> Marks:
    """Return the marks a store kept with :func:`marks_text`."""
    kept = json.loads(text)
    return frozen_marks({str(name): from_micros(int(micros)) for name, micros in kept.items()})
