"""What the commands print: cycle results, the status table, its JSON form, set-aside records.

Every function here is pure (values in, text out), so the formats are tested without a terminal.
The JSON document of ``incsync status --json`` is a stable interface for scripts; its schema is
:data:`STATUS_SCHEMA` and changes only with a new schema name.
"""

from __future__ import annotations

import ast
import enum
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, tzinfo
from typing import Any

import attrs

from incsync.cursor import Cursor
from incsync.humanize import TimeText, exact_time, plural, time_text
from incsync.records import RejectedRecord
from incsync.redaction import redact
from incsync.results import CycleResult
from incsync.state import CountCheck, Lease, SourceState, held_lease
from incsync.status import SourceStatus, StatusColor
from incsync.views import render_html_page, render_text_table, terminal_safe

__all__ = [
    "STATUS_SCHEMA",
    "CheckState",
    "check_unknown",
    "lease_text",
    "leases_text",
    "rejected_json",
    "rejected_text",
    "result_json",
    "result_text",
    "status_check",
    "status_html",
    "status_json",
    "status_text",
]

STATUS_SCHEMA = "incsync.status/1"
"""The name and version of the ``status --json`` document's schema."""

StatusRow = tuple[SourceState, SourceStatus]


def result_text(result: CycleResult, secrets: Sequence[str] = ()) -> str:
    """Return the lines reporting one cycle's result.

    Args:
        result: What the cycle did.
        secrets: Values to mask should they appear in the error (they should not).

    Returns:
        One line, and a second with the error for failed cycles.
    """
    line = (
        f"{terminal_safe(result.source_key)}: {result.outcome.value}: {result.fetched:,} fetched, "
        f"{result.applied:,} applied, {result.already_applied:,} already applied, "
        f"{result.rejected:,} set aside, {plural(result.pages, 'page')} in "
        f"{result.duration.total_seconds():.2f}s"
    )
    if result.error is not None:
        error = f"{result.error_class}: {redact(result.error, secrets)}"
        line += f"\n  error: {terminal_safe(error)}"
    return line


def _cursor_json(cursor: Cursor | None) -> dict[str, str] | None:
    if cursor is None:
        return None
    return {"updated_at": cursor.updated_at.isoformat(), "record_id": cursor.record_id}


def result_json(result: CycleResult, secrets: Sequence[str] = ()) -> str:
    """Return one cycle's result as one line of JSON, for ``incsync run --json``.

    Args:
        result: What the cycle did.
        secrets: Values to mask should they appear in the error (they should not).

    Returns:
        A JSON object on one line (see docs/cli.md for its fields), without a line break.
    """
    started = result.started_at
    document = {
        "source_key": result.source_key,
        "cycle_id": result.cycle_id,
        "outcome": result.outcome.value,
        "fetched": result.fetched,
        "applied": result.applied,
        "already_applied": result.already_applied,
        "rejected": result.rejected,
        "swept": result.swept,
        "pages": result.pages,
        "counted": _count_json(result.counted),
        "started_at": None if started is None else started.isoformat(),
        "duration_seconds": result.duration.total_seconds(),
        "cursor_before": _cursor_json(result.cursor_before),
        "cursor_after": _cursor_json(result.cursor_after),
        "error": None if result.error is None else redact(result.error, secrets),
        "error_class": result.error_class,
    }
    # ASCII only: JSON then escapes C1 controls and bidi overrides too, which a terminal obeys.
    return json.dumps(document, ensure_ascii=True)


def _with_exact(value: TimeText | None) -> TimeText | None:
    if value is None:
        return None
    return attrs.evolve(value, relative=f"{value.relative} ({value.exact})")


def status_text(rows: Iterable[StatusRow], *, ansi: bool) -> str:
    """Return the status table: colour, label, last change and last sync, and reason.

    Times read relative, with the exact time in parentheses.

    Args:
        rows: Each source's state and status, in the order to show.
        ansi: Colour the status with ANSI escapes (for a terminal).
    """
    table = [
        (
            state.key,
            attrs.evolve(
                status,
                last_change=_with_exact(status.last_change),
                last_sync=_with_exact(status.last_sync),
            ),
        )
        for state, status in rows
    ]
    return render_text_table(table, ansi=ansi)


def leases_text(states: Iterable[SourceState], *, now: datetime, zone: str | tzinfo) -> str:
    """Return one line per source whose lease a cycle holds at ``now``: who, since and until when.

    A source so held is skipped by every other worker (``skipped_running``) until the lease is
    released or expires; the line says how to release it should its holder be gone.

    Args:
        states: The sources' states, in the order to show.
        now: The present.
        zone: The display zone of the times.
    """
    lines = []
    for state in states:
        lease = held_lease(state, now)
        if lease is not None:
            key = terminal_safe(state.key)
            lines.append(
                f"{key}: {lease_text(lease, state.last_attempt, zone)} (if that process is "
                f"gone: incsync unlock {key} --force)\n"
            )
    return "".join(lines)


def lease_text(lease: Lease, since: datetime | None, zone: str | tzinfo = "UTC") -> str:
    """Return who holds ``lease``, since when (the cycle's start, if known) and until when."""
    started = "" if since is None else f" since {exact_time(since, zone)}"
    return (
        f"lease held by {terminal_safe(lease.holder)}{started}, until "
        f"{exact_time(lease.expires_at, zone)}"
    )


def status_html(rows: Iterable[StatusRow], *, now: datetime, title: str) -> str:
    """Return the standalone HTML status page (see :func:`incsync.views.render_html_page`)."""
    return render_html_page(
        [(state.key, status) for state, status in rows],
        title=title,
        generated=time_text(now, now=now),
    )


def _time(value: TimeText | None) -> dict[str, str] | None:
    if value is None:
        return None
    return {"iso": value.iso, "exact": value.exact, "relative": value.relative}


def _count_json(check: CountCheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {
        "source": check.source,
        "host": check.host,
        "drift": check.drift,
        "at": check.at.isoformat(),
    }


def _lease_json(state: SourceState, now: datetime) -> dict[str, Any] | None:
    lease = held_lease(state, now)
    if lease is None:
        return None
    return {
        "holder": lease.holder,
        "since": None if state.last_attempt is None else state.last_attempt.isoformat(),
        "expires_at": lease.expires_at.isoformat(),
        "token": lease.token,
    }


def _source_json(state: SourceState, status: SourceStatus, now: datetime) -> dict[str, Any]:
    error = state.last_error
    return {
        "key": state.key,
        "color": status.color.value,
        "reason": status.reason.value,
        "label": status.label,
        "icon": status.icon.value,
        "notes": [note.value for note in status.notes],
        "hover": status.hover,
        "last_change": _time(status.last_change),
        "last_sync": _time(status.last_sync),
        "phase": state.phase.value,
        "consecutive_failures": state.consecutive_failures,
        "last_error": None
        if error is None
        else {
            "class": error.error_class,
            "message": error.message,
            "at": error.at.isoformat(),
            "retryable": error.retryable,
        },
        "last_cycle_rejected": state.last_cycle_rejected,
        "count_check": _count_json(state.count_check),
        "lease": _lease_json(state, now),
    }


class CheckState(enum.IntEnum):
    """The states of a monitoring check, each its exit code (Nagios, Icinga, Zabbix, Sensu…)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


# Worst first, as the summary reads.
_CHECKED_COLORS = (StatusColor.RED, StatusColor.ORANGE, StatusColor.GREEN, StatusColor.GREY)


def status_check(colors: Iterable[StatusColor]) -> tuple[CheckState, str]:
    """Return the ``status --check`` state and its line: red is critical, orange a warning.

    Grey (starting, cancelled, resetting) is not a fault, so only red and orange raise the state.

    Args:
        colors: Every source's colour.

    Returns:
        The state (its value is the exit code) and one line with the counts and, after ``|``, the
        same counts as performance data, e.g.
        ``INCSYNC CRITICAL - 1 red, 2 orange, 5 green, 1 grey | red=1 orange=2 green=5 grey=1``.
    """
    counts = Counter(colors)
    if counts[StatusColor.RED]:
        state = CheckState.CRITICAL
    elif counts[StatusColor.ORANGE]:
        state = CheckState.WARNING
    else:
        state = CheckState.OK
    summary = ", ".join(f"{counts[color]} {color.value}" for color in _CHECKED_COLORS)
    data = " ".join(f"{color.value}={counts[color]}" for color in _CHECKED_COLORS)
    return state, f"INCSYNC {state.name} - {summary} | {data}\n"


def check_unknown(problem: str) -> str:
    """Return the ``status --check`` line of a check that could not read the statuses."""
    return f"INCSYNC {CheckState.UNKNOWN.name} - {terminal_safe(problem)}\n"


def status_json(rows: Iterable[StatusRow], *, now: datetime) -> str:
    """Return the ``status --json`` document (schema :data:`STATUS_SCHEMA`, see docs/cli.md).

    Args:
        rows: Each source's state and status, in the order to show.
        now: The time the statuses were computed for.
    """
    document = {
        "schema": STATUS_SCHEMA,
        "generated_at": now.isoformat(),
        "sources": [_source_json(state, status, now) for state, status in rows],
    }
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def rejected_text(key: str, records: Sequence[RejectedRecord]) -> str:
    """Return the records set aside for a source, one block per record, newest last."""
    if not records:
        return f"{terminal_safe(key)}: no records set aside\n"
    lines = [f"{terminal_safe(key)}: {plural(len(records), 'record')} set aside"]
    for record in records:
        seen = "" if record.seen_at is None else f" (seen {record.seen_at.isoformat()})"
        record_id = terminal_safe(record.record_id or "(no id)")
        lines.append(f"- {record_id}{seen}: {terminal_safe(record.reason)}")
        if record.raw:
            lines.append(f"    {terminal_safe(record.raw)}")
    return "\n".join(lines) + "\n"


def _raw_value(excerpt: str) -> tuple[Any, bool]:
    """Return the row an excerpt shows, and whether it could be read back exactly.

    The excerpt is the row's ``repr`` (:func:`incsync.records.raw_excerpt`), or a JSON text. Read
    back, it is the row only when nothing was lost: not cut short, and holding only what JSON holds
    (a tuple, a date or a number key would come back as something else).
    """
    for read in (json.loads, ast.literal_eval):
        value, exact = _read_back(read, excerpt)
        if exact:
            return value, True
    return None, False


def _read_back(read: Callable[[str], Any], excerpt: str) -> tuple[Any, bool]:
    try:
        value = read(excerpt)
        return value, json.loads(json.dumps(value, allow_nan=False)) == value
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None, False


def _rejected_entry(record: RejectedRecord) -> dict[str, Any]:
    raw, read = _raw_value(record.raw)
    return {
        "record_id": record.record_id,
        "reason": record.reason,
        "raw": raw,
        "raw_text": None if read else record.raw,
        "seen_at": None if record.seen_at is None else record.seen_at.isoformat(),
    }


def rejected_json(key: str, records: Sequence[RejectedRecord]) -> str:
    """Return the records set aside for a source as a JSON document.

    Each record's ``raw`` is the row as JSON when its stored excerpt reads back exactly; otherwise
    ``raw`` is ``null`` and ``raw_text`` holds the excerpt as stored (a Python ``repr``, perhaps
    cut short).
    """
    document = {"key": key, "rejected": [_rejected_entry(record) for record in records]}
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"
