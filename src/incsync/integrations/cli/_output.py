"""What the commands print: cycle results, the status table and JSON, cursors, records, history.

Every function here is pure (values in, text out), so the formats are tested without a terminal.
The JSON document of ``incsync status --json`` is a stable interface for scripts; its schema is
:data:`STATUS_SCHEMA` and changes only with a new schema name.
"""

from __future__ import annotations

import enum
import json
import re
import shlex
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Any

import attrs

from incsync.cursor import Cursor
from incsync.history import CycleEntry, HistorySummary
from incsync.humanize import TimeText, exact_time, plural, time_text
from incsync.records import RejectedRecord, excerpt_row
from incsync.redaction import redact
from incsync.results import CycleResult
from incsync.state import CountCheck, Lease, SourceState, held_lease
from incsync.status import SourceStatus, StatusColor
from incsync.views import render_html_page, render_text_table, terminal_safe

__all__ = [
    "CURSOR_SCHEMA",
    "STATUS_SCHEMA",
    "CheckState",
    "check_unknown",
    "cursor_json",
    "cursor_text",
    "errors_text",
    "history_json",
    "history_text",
    "lease_text",
    "leases_text",
    "rejected_command_line",
    "rejected_json",
    "rejected_text",
    "result_json",
    "result_text",
    "rewound_text",
    "set_aside_hint",
    "set_aside_text",
    "status_check",
    "status_html",
    "status_json",
    "status_text",
]

STATUS_SCHEMA = "incsync.status/1"
"""The name and version of the ``status --json`` document's schema."""

CURSOR_SCHEMA = "incsync.cursor/1"
"""The name and version of the ``cursor --json`` document's schema."""

StatusRow = tuple[SourceState, SourceStatus]


def result_text(result: CycleResult, secrets: Sequence[str] = ()) -> str:
    """Return the lines reporting one cycle's result.

    Args:
        result: What the cycle did.
        secrets: Values to mask should they appear in the error (they should not).

    Returns:
        One line, and a second with the error for failed cycles.
    """
    line = f"{terminal_safe(result.source_key)}: {result.outcome.value}: {_counts_text(result)}"
    if result.error is not None:
        error = f"{result.error_class}: {redact(result.error, secrets)}"
        line += f"\n  error: {terminal_safe(error)}"
    if result.rejected:
        listing = terminal_safe(rejected_command_line(result.source_key))
        line += f"\n  set aside: {listing} lists them with the reasons"
    return line


def _counts_text(cycle: CycleResult | CycleEntry) -> str:
    """Say what a cycle read and wrote, and how long it took, as one run and its entry read."""
    return (
        f"{cycle.fetched:,} fetched, {cycle.applied:,} applied, "
        f"{cycle.already_applied:,} already applied, {cycle.rejected:,} set aside, "
        f"{plural(cycle.pages, 'page')} in {cycle.duration.total_seconds():.2f}s"
    )


def rejected_command_line(key: str) -> str:
    """Return the command that lists a source's set-aside records, quoted for a shell."""
    return f"incsync rejected {shlex.quote(key)}"


def set_aside_hint(key: str) -> str:
    """Return the sentence of a source's status hover that says where its set-aside records are.

    The command passes it as :attr:`incsync.status.StatusPolicy.set_aside_hint`, whose default
    names ``SyncEngine.rejected()``, for a host's own screens.
    """
    return f"Run {rejected_command_line(key)} to list each one with the reason it was set aside."


def set_aside_text(states: Iterable[SourceState]) -> str:
    """Return one line per source whose last cycle set records aside, with the command to list them.

    Args:
        states: The sources' states, in the order to show.
    """
    return "".join(
        f"{terminal_safe(state.key)}: {plural(state.last_cycle_rejected, 'record')} set aside by "
        f"the last cycle ({terminal_safe(rejected_command_line(state.key))} lists them)\n"
        for state in states
        if state.last_cycle_rejected
    )


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
        "reconcile_fetched": result.reconcile_fetched,
        "reconcile_tombstoned": result.reconcile_tombstoned,
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


# The colour escapes render_text_table writes; everything else printed is terminal_safe, so no
# other escape sequence can be in a line.
_COLOUR = re.compile(r"(\x1b\[[0-9;]*m)")


def _fit(line: str, width: int) -> str:
    """Return ``line`` cut to ``width`` visible characters, ending in "…" when cut.

    Colour escapes take no room and are all kept, so a colour still ends where it did.
    """
    if len(_COLOUR.sub("", line)) <= width:
        return line
    room, pieces = width - 1, []
    for piece in _COLOUR.split(line):
        if _COLOUR.fullmatch(piece):
            pieces.append(piece)
        else:
            pieces.append(piece[: max(room, 0)])
            room -= len(piece)
    return "".join(pieces) + "…"


def _wrapped(line: str, width: int | None) -> str:
    """Return ``line`` broken at spaces to ``width``, later lines indented; as it is without one."""
    if width is None:
        return line + "\n"
    # URLs and dotted names in error messages stay whole; one longer than the width overflows.
    lines = textwrap.wrap(
        line, width, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
    )
    return "\n".join(lines) + "\n"


def status_text(rows: Iterable[StatusRow], *, ansi: bool, width: int | None = None) -> str:
    """Return the status table: colour, label, last change and last sync, and reason.

    Times read relative, with the exact time in parentheses. Given a ``width`` (a terminal's), a
    table wider than it shows the relative times alone, and a line still wider is cut with "…".

    Args:
        rows: Each source's state and status, in the order to show.
        ansi: Colour the status with ANSI escapes (for a terminal).
        width: The columns to fit in; ``None`` for any width (a pipe, a file).
    """
    shown = list(rows)

    def table(exact: bool) -> str:
        return render_text_table(
            [
                (
                    state.key,
                    attrs.evolve(
                        status,
                        last_change=_with_exact(status.last_change)
                        if exact
                        else status.last_change,
                        last_sync=_with_exact(status.last_sync) if exact else status.last_sync,
                    ),
                )
                for state, status in shown
            ],
            ansi=ansi,
        )

    text = table(exact=True)
    if width is None:
        return text
    if max(len(_COLOUR.sub("", line)) for line in text.splitlines()) > width:
        text = table(exact=False)
    return "".join(_fit(line, width) + "\n" for line in text.splitlines())


def errors_text(
    states: Iterable[SourceState], *, now: datetime, zone: str | tzinfo, width: int | None = None
) -> str:
    """Return why each source that failed since its last completed cycle did: its last error.

    One line per such source (the error class and message, secrets already masked when it was
    stored, and when), broken to ``width`` when one is given.

    Args:
        states: The sources' states, in the order to show.
        now: The present.
        zone: The display zone of the times.
        width: The columns to fit in; ``None`` for one line per source.
    """
    lines = []
    for state in states:
        error = state.last_error
        if error is not None:
            at = time_text(error.at, now=now, zone=zone)
            line = (
                f"{terminal_safe(state.key)}: last error {at.relative} ({at.exact}): "
                f"{terminal_safe(error.error_class)}: {terminal_safe(error.message)}"
            )
            lines.append(_wrapped(line, width))
    return "".join(lines)


def leases_text(
    states: Iterable[SourceState], *, now: datetime, zone: str | tzinfo, width: int | None = None
) -> str:
    """Return one line per source whose lease a cycle holds at ``now``: who, since and until when.

    A source so held is skipped by every other worker (``skipped_running``) until the lease is
    released or expires; the line says how to release it should its holder be gone.

    Args:
        states: The sources' states, in the order to show.
        now: The present.
        zone: The display zone of the times.
        width: The columns to fit in (lines are broken at spaces); ``None`` for any width.
    """
    lines = []
    for state in states:
        lease = held_lease(state, now)
        if lease is not None:
            key = terminal_safe(state.key)
            line = (
                f"{key}: {lease_text(lease, state.last_attempt, zone)} (if that process is "
                f"gone: incsync unlock {key} --force)"
            )
            lines.append(_wrapped(line, width))
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


def _history_json(summary: HistorySummary | None) -> dict[str, int | float | None] | None:
    if summary is None:
        return None
    skew = summary.clock_skew
    return {
        "cycles": summary.cycles,
        "completed": summary.completed,
        "failed": summary.failed,
        "interrupted": summary.interrupted,
        "clock_skew_seconds": None if skew is None else skew.total_seconds(),
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


def _source_json(
    state: SourceState, status: SourceStatus, now: datetime, history: HistorySummary | None
) -> dict[str, Any]:
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
        "history": _history_json(history),
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


def status_json(
    rows: Iterable[StatusRow],
    *,
    now: datetime,
    histories: Mapping[str, HistorySummary] = MappingProxyType({}),
) -> str:
    """Return the ``status --json`` document (schema :data:`STATUS_SCHEMA`, see docs/cli.md).

    Args:
        rows: Each source's state and status, in the order to show.
        now: The time the statuses were computed for.
        histories: Each source's history summary by key; ``history`` is ``null`` without one.
    """
    document = {
        "schema": STATUS_SCHEMA,
        "generated_at": now.isoformat(),
        "sources": [
            _source_json(state, status, now, histories.get(state.key)) for state, status in rows
        ],
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


def _rejected_entry(record: RejectedRecord) -> dict[str, Any]:
    raw, read = excerpt_row(record.raw)
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


def _position(cursor: Cursor) -> str:
    # ISO 8601 to the microsecond: the exact position, which reset --since accepts as it is.
    at = cursor.updated_at.isoformat()
    if not cursor.record_id:
        return f"{at}, before every record of that time"
    return f"{at}, record {terminal_safe(cursor.record_id)}"


def cursor_text(state: SourceState, *, now: datetime) -> str:
    """Return where a source's next cycle reads from: cursor, generation, phase, last change, marks.

    Args:
        state: The source's state.
        now: The present, for how long ago the last change was.
    """
    cursor = (
        "none: the next cycle reads everything"
        if state.cursor is None
        else (_position(state.cursor))
    )
    phase = state.phase.value
    if state.reset_pending:
        phase += " (a reset's full read has not completed yet)"
    change = state.last_change
    marks = ", ".join(f"{terminal_safe(name)} {at.isoformat()}" for name, at in state.marks.items())
    rows = (
        ("cursor", cursor),
        ("generation", str(state.generation)),
        ("phase", phase),
        (
            "last change",
            "none seen yet"
            if change is None
            else f"{change.isoformat()} ({time_text(change, now=now).relative})",
        ),
        ("marks", marks or "none"),
    )
    lines = [terminal_safe(state.key)] + [f"  {name:<12} {value}" for name, value in rows]
    return "\n".join(lines) + "\n"


def cursor_json(state: SourceState) -> str:
    """Return the ``cursor --json`` document (schema :data:`CURSOR_SCHEMA`, see docs/cli.md)."""
    document = {
        "schema": CURSOR_SCHEMA,
        "key": state.key,
        "cursor": _cursor_json(state.cursor),
        "generation": state.generation,
        "phase": state.phase.value,
        "reset_pending": state.reset_pending,
        "last_change": None if state.last_change is None else state.last_change.isoformat(),
        "marks": {name: at.isoformat() for name, at in state.marks.items()},
    }
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def rewound_text(state: SourceState, since: datetime) -> str:
    """Return what ``reset --since`` did: where the next cycle of the rewound source reads from.

    Args:
        state: The source's state after the rewind.
        since: The time it was rewound to.
    """
    cursor = state.cursor
    if cursor is None:
        where = "it has no cursor yet, so the next cycle reads everything"
    elif cursor == Cursor(since, ""):
        where = f"the next cycle reads from {since.isoformat()}"
    else:
        where = f"its cursor was earlier already and stays at {_position(cursor)}"
    return (
        f"{terminal_safe(state.key)}: rewound to {since.isoformat()}: {where}, and re-applies "
        f"what it reads; nothing deleted, nothing swept (phase {state.phase.value})\n"
    )


def history_text(key: str, entries: Sequence[CycleEntry], *, zone: str | tzinfo = "UTC") -> str:
    """Return a source's cycles, newest first: one line each, and its error beneath.

    Args:
        key: The source.
        entries: Its cycle entries, newest first.
        zone: The display zone of the start times.
    """
    if not entries:
        return f"{terminal_safe(key)}: no cycles recorded\n"
    lines = [f"{terminal_safe(key)}: {plural(len(entries), 'cycle')}, newest first"]
    for entry in entries:
        # The id whole, so it finds the cycle's log lines with grep (none on entries kept before).
        cycle = "" if entry.cycle_id is None else f", cycle {entry.cycle_id}"
        lines.append(
            f"{exact_time(entry.started, zone)}  {entry.outcome.value}: {_counts_text(entry)} "
            f"(generation {entry.generation}, {terminal_safe(entry.worker)}{cycle})"
        )
        if entry.reconcile_fetched or entry.reconcile_tombstoned:
            lines.append(
                f"  reconciled by id: {entry.reconcile_fetched:,} fetched, "
                f"{entry.reconcile_tombstoned:,} tombstoned"
            )
        if entry.error is not None:
            lines.append(f"  error: {terminal_safe(f'{entry.error_class}: {entry.error}')}")
        if entry.retry_at is not None:
            lines.append(f"  the source asked to wait until {exact_time(entry.retry_at, zone)}")
    return "\n".join(lines) + "\n"


def _entry_json(entry: CycleEntry) -> dict[str, Any]:
    skew, retry_at = entry.clock_skew, entry.retry_at
    return {
        "source_key": entry.source_key,
        "cycle_id": entry.cycle_id,
        "outcome": entry.outcome.value,
        "started": entry.started.isoformat(),
        "ended": entry.ended.isoformat(),
        "duration_seconds": entry.duration.total_seconds(),
        "generation": entry.generation,
        "worker": entry.worker,
        "pages": entry.pages,
        "fetched": entry.fetched,
        "applied": entry.applied,
        "already_applied": entry.already_applied,
        "rejected": entry.rejected,
        "swept": entry.swept,
        "reconcile_fetched": entry.reconcile_fetched,
        "reconcile_tombstoned": entry.reconcile_tombstoned,
        "error_class": entry.error_class,
        "error": entry.error,
        "retry_at": None if retry_at is None else retry_at.isoformat(),
        "clock_skew_seconds": None if skew is None else skew.total_seconds(),
    }


def history_json(entries: Sequence[CycleEntry]) -> str:
    """Return a source's cycles as a JSON array, newest first (see docs/cli.md for the fields)."""
    return json.dumps([_entry_json(entry) for entry in entries], indent=2, ensure_ascii=True) + "\n"
