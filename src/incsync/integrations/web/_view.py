"""What the console's templates show, in the viewer's words: rows of the list, a source's page.

Every value here is plain text (the templates escape it) or an icon drawn by
:func:`incsync.views.icon_svg`. Nothing is decided here: colours, reasons and labels come from
:func:`incsync.status.status_of`, the actions offered from
:func:`incsync.actions.available_actions`; this module only writes them for one viewer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

import attrs
from markupsafe import Markup

from incsync.actions import Action, ActionEntry, available_actions
from incsync.history import CycleEntry, HistorySummary
from incsync.integrations.web._i18n import Texts
from incsync.integrations.web._words import (
    ACTION_DONE,
    MEANINGS,
    OUTCOME_NAMES,
    next_step,
)
from incsync.records import RejectedRecord, excerpt_row
from incsync.results import Outcome
from incsync.state import SourceState
from incsync.status import SourceStatus, StatusColor
from incsync.views import icon_svg, terminal_safe

__all__ = [
    "Bar",
    "HistoryLine",
    "RowView",
    "TimeView",
    "chart_bars",
    "element_id",
    "history_lines",
    "history_sentence",
    "row_view",
    "set_aside_view",
]

# A line of details is no place for a stack trace: long messages are cut.
_MESSAGE_LIMIT = 300


@attrs.frozen
class TimeView:
    """One time: relative words, the exact time in the viewer's zone, and the instant."""

    relative: str
    exact: str
    iso: str


def time_view(texts: Texts, when: datetime | None) -> TimeView | None:
    """Return a time in the viewer's words, ``None`` for none."""
    if when is None:
        return None
    return TimeView(texts.relative(when), texts.exact(when), texts.iso(when))


def _short(message: str) -> str:
    # Vendors' words: control characters (terminal escapes, bidi overrides) shown as escapes.
    text = terminal_safe(" ".join(message.split()))
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def element_id(key: str) -> str:
    """Return an HTML id for a source: its key may hold any character, the id may not."""
    return "s-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@attrs.frozen
class RowView:
    """One source as the list shows it.

    Args:
        key: The source's name.
        element: Its HTML id.
        color: The circle's colour.
        icon: The circle's shape, as inline SVG.
        label: The status label, translated.
        last_change: The last change at the source.
        last_sync: The last completed sync.
        inline: The reason and next step shown in the row itself (red rows); empty otherwise.
        details: The sentences of the details disclosure.
        actions: The actions the source offers.
    """

    key: str
    element: str
    color: StatusColor
    icon: Markup
    label: str
    last_change: TimeView | None
    last_sync: TimeView | None
    inline: tuple[str, ...]
    details: tuple[str, ...]
    actions: tuple[Action, ...]


def history_sentence(texts: Texts, summary: HistorySummary | None) -> str | None:
    """Say how the latest cycles ended, ``None`` without any."""
    if summary is None or not summary.cycles:
        return None
    _ = texts.gettext
    return _(
        "Latest {cycles}: {completed} completed, {failed} failed, {interrupted} interrupted."
    ).format(
        cycles=texts.ngettext("%(num)s cycle", "%(num)s cycles", summary.cycles),
        completed=texts.number(summary.completed),
        failed=texts.number(summary.failed),
        interrupted=texts.number(summary.interrupted),
    )


def _error_sentences(texts: Texts, state: SourceState) -> list[str]:
    error = state.last_error
    if not state.consecutive_failures or error is None:
        return []
    _ = texts.gettext
    return [
        _("Last error ({when}): {error}: {message}").format(
            when=texts.exact(error.at),
            error=terminal_safe(error.error_class),
            message=_short(error.message),
        ),
        texts.ngettext(
            "%(num)s failed attempt in a row.",
            "%(num)s failed attempts in a row.",
            state.consecutive_failures,
        ),
    ]


def _fact_sentences(texts: Texts, state: SourceState) -> list[str]:
    _ = texts.gettext
    sentences = []
    if state.lease is not None and state.lease.expires_at > texts.now:
        sentences.append(
            _("A cycle is running: {holder} holds the lease until {until}.").format(
                holder=terminal_safe(state.lease.holder), until=texts.exact(state.lease.expires_at)
            )
        )
    if state.not_before is not None and state.not_before > texts.now:
        sentences.append(
            _("The source asked not to be called before {when}.").format(
                when=texts.exact(state.not_before)
            )
        )
    if state.last_cycle_rejected:
        sentences.append(
            texts.ngettext(
                "The last cycle set %(num)s record aside; the source's page lists it.",
                "The last cycle set %(num)s records aside; the source's page lists them.",
                state.last_cycle_rejected,
            )
        )
    count = state.count_check
    if count is not None and count.drift:
        sentences.append(
            _("The source has {source} live records; {host} are imported (counted {when}).").format(
                source=texts.number(count.source),
                host=texts.number(count.host),
                when=texts.exact(count.at),
            )
        )
    return sentences


def _time_sentences(texts: Texts, state: SourceState) -> list[str]:
    _ = texts.gettext
    change, sync = state.last_change, state.last_sync
    return [
        _("Last change at the source: {when}.").format(when=texts.exact(change))
        if change is not None
        else _("No change at the source has been seen yet."),
        _("Last completed sync: {when}.").format(when=texts.exact(sync))
        if sync is not None
        else _("No cycle has completed yet."),
        *(
            [_("Last attempt: {when}.").format(when=texts.exact(state.last_attempt))]
            if state.last_attempt is not None
            else []
        ),
    ]


def reason_sentences(texts: Texts, state: SourceState, status: SourceStatus) -> tuple[str, ...]:
    """Return the reason and, for a red source, the next step and the error that stopped it."""
    _ = texts.gettext
    sentences = [_(MEANINGS[status.reason])]
    if status.color is not StatusColor.RED:
        return tuple(sentences)
    error = state.last_error
    step = next_step(status.reason, error is not None and error.auth)
    if step is not None:
        sentences.append(_(step))
    if error is not None:
        sentences.append(f"{terminal_safe(error.error_class)}: {_short(error.message)}")
    return tuple(sentences)


def row_view(
    texts: Texts, state: SourceState, status: SourceStatus, history: HistorySummary | None
) -> RowView:
    """Return one source as the list shows it to this viewer."""
    reason = reason_sentences(texts, state, status)
    summary = history_sentence(texts, history)
    red = status.color is StatusColor.RED
    details = (
        *(() if red else reason),
        *_time_sentences(texts, state),
        *(() if red else _error_sentences(texts, state)),
        *_fact_sentences(texts, state),
        *(() if summary is None else (summary,)),
    )
    return RowView(
        key=state.key,
        element=element_id(state.key),
        color=status.color,
        icon=Markup(icon_svg(status.icon)),
        label=texts.gettext(status.label),
        last_change=time_view(texts, state.last_change),
        last_sync=time_view(texts, state.last_sync),
        inline=reason if red else (),
        details=details,
        actions=available_actions(state.phase),
    )


@attrs.frozen
class HistoryLine:
    """One line of a source's history: a cycle, or an action someone made.

    Args:
        when: When it ended (a cycle) or was made (an action).
        what: The outcome, or the action and who made it.
        kind: ``"completed"``, ``"failed"``, ``"interrupted"`` or ``"action"`` (for styling).
        records: Records read, applied and set aside, for a cycle.
        duration: How long a cycle ran, in seconds.
        detail: The error of a failed cycle, and who ran it.
    """

    when: TimeView
    what: str
    kind: str
    records: str
    duration: str
    detail: str


@attrs.frozen
class Bar:
    """One cycle's bar in a source's chart (on a 300 by 60 grid)."""

    x: int
    y: int
    height: int
    kind: str
    label: str


def chart_bars(cycles: Sequence[CycleEntry]) -> list[Bar]:
    """Bars of the records each cycle read, oldest on the left, coloured by how it ended."""
    ordered = list(reversed(cycles))
    tallest = max((cycle.fetched for cycle in ordered), default=0) or 1
    # A cycle that read nothing still shows, as a sliver.
    heights = [max(2, round(56 * cycle.fetched / tallest)) for cycle in ordered]
    return [
        Bar(place * 10, 58 - height, height, _kind(cycle.outcome), str(cycle.fetched))
        for place, (cycle, height) in enumerate(zip(ordered, heights, strict=True))
    ]


def _kind(outcome: Outcome) -> str:
    if outcome is Outcome.COMPLETED:
        return "completed"
    return "failed" if outcome is Outcome.FAILED else "interrupted"


def _action_line(texts: Texts, action: ActionEntry) -> HistoryLine:
    return HistoryLine(
        when=TimeView(texts.relative(action.at), texts.exact(action.at), texts.iso(action.at)),
        what=texts.gettext(ACTION_DONE[action.action]).format(actor=terminal_safe(action.actor)),
        kind="action",
        records="",
        duration="",
        detail="",
    )


def history_lines(
    texts: Texts, cycles: Sequence[CycleEntry], actions: Sequence[ActionEntry]
) -> list[HistoryLine]:
    """Return a source's cycles and actions as one history, newest first."""
    _ = texts.gettext
    lines: list[tuple[datetime, HistoryLine]] = []
    for cycle in cycles:
        error = (
            ""
            if cycle.error is None
            else f"{terminal_safe(cycle.error_class or '')}: {_short(cycle.error)}"
        )
        seconds = cycle.duration.total_seconds()
        lines.append(
            (
                cycle.ended,
                HistoryLine(
                    when=TimeView(
                        texts.relative(cycle.ended),
                        texts.exact(cycle.ended),
                        texts.iso(cycle.ended),
                    ),
                    what=_(OUTCOME_NAMES[cycle.outcome]),
                    kind=_kind(cycle.outcome),
                    records=_("{fetched} read, {applied} applied, {rejected} set aside").format(
                        fetched=texts.number(cycle.fetched),
                        applied=texts.number(cycle.applied),
                        rejected=texts.number(cycle.rejected),
                    ),
                    duration=_("{seconds} s").format(seconds=f"{seconds:.1f}"),
                    detail=" ".join(
                        part
                        for part in (
                            error,
                            _("by {worker}").format(worker=terminal_safe(cycle.worker)),
                        )
                        if part
                    ),
                ),
            )
        )
    lines.extend((action.at, _action_line(texts, action)) for action in actions)
    lines.sort(key=lambda pair: pair[0], reverse=True)
    return [line for _when, line in lines]


@attrs.frozen
class SetAsideView:
    """A record set aside: its id, why, when, and its raw text made inert for display."""

    record_id: str
    reason: str
    seen: TimeView | None
    raw: str


def set_aside_view(texts: Texts, record: RejectedRecord) -> SetAsideView:
    """Return a set-aside record for display.

    A row whose excerpt reads back exactly (:func:`incsync.records.excerpt_row`: not cut short,
    only what JSON holds) is shown as indented JSON; any other excerpt as it was stored. Either
    way, HTML escaping (the templates') makes markup inert, and
    :func:`incsync.views.terminal_safe` makes control characters (terminal escapes, bidi
    overrides) visible as escapes, line breaks kept.
    """
    row, exact = excerpt_row(record.raw)
    text = record.raw
    if exact and isinstance(row, (dict, list)):
        # Not ASCII-only: names in any script stay readable; what is unsafe is escaped below.
        text = json.dumps(row, indent=2, ensure_ascii=False)
    raw = "\n".join(terminal_safe(line) for line in text.split("\n"))
    return SetAsideView(
        record_id=terminal_safe(record.record_id or "—"),
        reason=terminal_safe(record.reason),
        seen=time_view(texts, record.seen_at),
        raw=raw,
    )
