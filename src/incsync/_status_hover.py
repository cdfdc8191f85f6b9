"""The status's hover: full sentences with exact times, in the order a person reads them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache

import attrs

from incsync._status_decision import _attempt_wait, _Facts, _is_auth
from incsync._status_values import StatusNote, StatusPolicy, StatusReason
from incsync.history import HistorySummary
from incsync.humanize import TimeText, duration_text, plural, time_text

# A tooltip is no place for a stack trace: long messages are cut, whitespace is folded.
_MESSAGE_LIMIT = 200
_WHITESPACE = re.compile(r"\s+")


def _short_message(message: str) -> str:
    text = _WHITESPACE.sub(" ", message).strip()
    if len(text) > _MESSAGE_LIMIT:
        return text[: _MESSAGE_LIMIT - 1].rstrip() + "…"
    return text


def _at(text: TimeText) -> str:
    # A comma, not parentheses: exact times outside UTC already end in "(UTC-05:00)".
    return f"{text.exact}, {text.relative}"


# Policies are few and shared, so their durations are spelled once, not once per source.
_spelled = lru_cache(maxsize=64)(duration_text)


def _every(interval: timedelta) -> str:
    words = _spelled(interval)
    # "every hour", not "every 1 hour".
    return f"every {words[2:] if words.startswith('1 ') and words.count(' ') == 1 else words}"


@attrs.frozen(slots=True)
class _Texts:
    """The facts' times as text in the display zone; ``None`` where the hover has no use for one.

    ``write`` turns any other time into text the same way, for the few hovers that name one: most
    statuses need neither the last nor the next attempt spelled out.
    """

    last_sync: TimeText | None
    last_change: TimeText | None
    error_at: TimeText | None
    waiting_until: TimeText | None
    write: Callable[[datetime], TimeText]


def _texts(facts: _Facts, zone: tzinfo, tolerance: timedelta) -> _Texts:
    def spell(when: datetime) -> TimeText:
        return time_text(when, facts.now, zone=zone, future_tolerance=tolerance)

    def text(when: datetime | None) -> TimeText | None:
        return None if when is None else spell(when)

    last_sync = text(facts.last_sync)

    def write(when: datetime) -> TimeText:
        # The last attempt is often the last completed sync itself: spell that once.
        return last_sync if last_sync is not None and when == facts.last_sync else spell(when)

    return _Texts(
        last_sync=last_sync,
        last_change=text(facts.last_change),
        error_at=None if facts.error is None else text(facts.error.at),
        waiting_until=text(facts.waiting_until),
        write=write,
    )


def _overdue_sentences(
    facts: _Facts, texts: _Texts, next_attempt: datetime | None, interval: str
) -> list[str]:
    """Say since when nothing was attempted, when the next attempt was due, and who to suspect."""
    since = "" if facts.last_attempt is None else f" since {_at(texts.write(facts.last_attempt))}"
    sentences = [
        f"Synchronization is overdue: no attempt has been made{since}, "
        f"though cycles should run {interval}."
    ]
    if next_attempt is not None:
        sentences.append(f"The next attempt was due at {_at(texts.write(next_attempt))}.")
    sentences.append("The scheduler that starts the cycles may not be running.")
    return sentences


def _headline(
    reason: StatusReason,
    policy: StatusPolicy,
    facts: _Facts,
    texts: _Texts,
    next_attempt: datetime | None,
) -> list[str]:
    """Say what the colour means for this source, in the words of the status screen."""
    interval = _every(policy.expected_interval)
    recent = _spelled(policy.recent_change)
    if reason is StatusReason.CANCELLED:
        return [
            "Synchronization was cancelled: no cycle runs until the source is resumed or reset.",
            "No transactions were deleted.",
        ]
    if reason is StatusReason.STOPPED:
        return ["Synchronization has stopped because of repeated errors connecting to the source."]
    if reason is StatusReason.RESETTING:
        why = [] if facts.reset_reason is None else [f"Why: {_short_message(facts.reset_reason)}."]
        return [
            "Synchronization was reset: the next cycle re-reads every record from the source.",
            *why,
            "No transactions were deleted.",
        ]
    if reason is StatusReason.STARTING:
        return [f"Synchronization is starting (cycles run {interval})."]
    if reason is StatusReason.SYNC_OVERDUE:
        return _overdue_sentences(facts, texts, next_attempt, interval)
    if reason is StatusReason.RETRYING:
        return [
            f"No cycle has completed in the last {_spelled(policy.recent_sync)}, so recent "
            "changes at the source have not been seen, but synchronization is still being "
            "attempted."
        ]
    if reason is StatusReason.RECENT_CHANGES:
        return [f"Synchronization is running, and the source changed in the last {recent}."]
    if facts.last_change is None:
        return ["Synchronization is running, but no change at the source has been seen yet."]
    return [f"Synchronization is running, but the source has not changed in the last {recent}."]


def _count_sentence(error_count: int, stopped: bool, stop_after: int | None) -> str:
    """Say how many attempts failed in a row, and the threshold only where one applies."""
    attempts = f"{plural(error_count, 'failed attempt')} in a row"
    if stopped:
        return f"It stopped after {attempts}."
    if stop_after is None:
        # The engine decides when to stop, and the state does not say at how many failures.
        return f"That is {attempts}."
    return f"That is {attempts}; synchronization stops after {stop_after}."


def _failure_sentences(
    facts: _Facts, error_at: TimeText | None, stopped: bool, stop_after: int | None
) -> list[str]:
    """Say when the last attempt failed, why, how often in a row, and whether waiting helps."""
    if not facts.error_count:
        return []
    error = facts.error
    if error is None or error_at is None:
        sentences = ["The last attempt failed."]
    else:
        sentences = [
            f"The last attempt failed at {_at(error_at)}, with "
            f"{error.error_class}: {_short_message(error.message)}."
        ]
    sentences.append(_count_sentence(facts.error_count, stopped, stop_after))
    if _is_auth(error):
        sentences.append(
            "Waiting will not fix this: check the connection's credentials and permissions."
        )
    elif error is not None and not error.retryable:
        sentences.append("Waiting alone may not fix this kind of error.")
    return sentences


def _next_attempt_sentence(
    facts: _Facts, next_attempt: datetime | None, texts: _Texts, policy: StatusPolicy
) -> str:
    """Say when the next attempt is due: after the source's wait, after the backoff, or now."""
    if next_attempt is None:
        return "incsync will retry at the next cycle."
    text = texts.write(next_attempt)
    if next_attempt <= facts.now:
        return f"The next attempt is due now (it was due at {text.exact})."
    if next_attempt == facts.waiting_until:
        return f"The source asked to wait, so the next attempt is due at {text.exact}."
    wait = _attempt_wait(facts.error_count, policy)
    if wait > policy.expected_interval:
        return (
            f"The next attempt is due at {text.exact}, {_spelled(wait)} after the last: "
            "attempts are spaced out while they fail."
        )
    return f"The next attempt is due at {text.exact}."


def _next_step(
    reason: StatusReason,
    facts: _Facts,
    texts: _Texts,
    next_attempt: datetime | None,
    policy: StatusPolicy,
) -> tuple[list[str], list[StatusNote]]:
    """Say what happens next: a fix and a resume, the next attempt, or a wait the source asked."""
    sentences: list[str] = []
    notes: list[StatusNote] = []
    waiting = texts.waiting_until
    # A stopped or cancelled source does not retry by itself, so only the others say when.
    failed = bool(facts.error_count) and reason not in (
        StatusReason.STOPPED,
        StatusReason.CANCELLED,
    )
    if reason is StatusReason.STOPPED:
        sentences.append("Fix the cause, then resume the source.")
    if failed:
        notes.append(StatusNote.LAST_ATTEMPT_FAILED)
    # An attempt after the last completed sync that has not failed either: still running, or lost.
    unfinished = facts.last_attempt if facts.last_attempt != facts.last_sync else None
    quietly_retrying = reason is StatusReason.RETRYING and not failed and waiting is None
    if quietly_retrying and unfinished is not None and facts.running:
        sentences.append(f"A cycle has been running since {_at(texts.write(unfinished))}.")
    elif quietly_retrying and unfinished is not None:
        sentences.append(
            f"The last attempt started at {_at(texts.write(unfinished))}, and has neither "
            "completed nor failed."
        )
    elif (failed or quietly_retrying) and reason is not StatusReason.SYNC_OVERDUE:
        # An overdue source's headline already said when the next attempt was due.
        sentences.append(_next_attempt_sentence(facts, next_attempt, texts, policy))
    if waiting is not None:
        notes.append(StatusNote.WAITING_FOR_SOURCE)
        if not (failed and next_attempt == facts.waiting_until):
            sentences.append(f"The source asked not to be called before {waiting.exact}.")
    return sentences, notes


def _set_aside_sentences(rejected: int, policy: StatusPolicy) -> list[str]:
    if not rejected:
        return []
    records, pronoun = plural(rejected, "record"), "it" if rejected == 1 else "they"
    return [
        f"The last cycle set {records} aside because {pronoun} could not be read; "
        f"everything else was applied. {policy.set_aside_hint}"
    ]


def _records(count: int) -> str:
    return plural(count, "live record")


def _drift_sentences(facts: _Facts, texts: _Texts) -> list[str]:
    """Say what the last count found, only when the source and the host disagreed."""
    source, host, at = facts.live_at_source, facts.live_in_host, facts.counted_at
    if source is None or host is None or at is None or source == host:
        return []
    verb = "is" if host == 1 else "are"
    return [
        f"The source has {_records(source)}; {host:,} {verb} imported "
        f"(counted {_at(texts.write(at))})."
    ]


def _skew_sentences(facts: _Facts, texts: _Texts, tolerance: timedelta) -> list[str]:
    """Name the suspect clock of a time beyond the tolerance: a clock to check, not skew to hide."""
    sentences = []
    sync_at, change_at = facts.last_sync, facts.last_change
    if texts.last_sync is not None and sync_at is not None and sync_at - facts.now > tolerance:
        sentences.append(
            f"The last sync is dated {texts.last_sync.relative}: "
            "this host's clock may have been set back."
        )
    if (
        texts.last_change is not None
        and change_at is not None
        and change_at - facts.now > tolerance
    ):
        sentences.append(
            f"The last change is dated {texts.last_change.relative}: the source's clock may be "
            "ahead of this host's."
        )
    return sentences


def _source_clock_sentences(history: HistorySummary | None, tolerance: timedelta) -> list[str]:
    """Say that times are on the source's clock, when its measured skew is beyond the tolerance."""
    skew = None if history is None else history.clock_skew
    if skew is None or abs(skew) <= tolerance:
        return []
    way = "ahead of" if skew > timedelta(0) else "behind"
    return [
        f"The source's clock is {duration_text(abs(skew))} {way} this host's; times are read on "
        "the source's clock."
    ]


def _history_sentences(history: HistorySummary | None) -> list[str]:
    """Say how the latest cycles ended, when there were any."""
    if history is None or not history.cycles:
        return []
    ended = [
        (count, word)
        for count, word in (
            (history.completed, "completed"),
            (history.failed, "failed"),
            (history.interrupted, "interrupted"),
        )
        if count
    ]
    if history.cycles == 1:
        return [f"Last cycle: {ended[0][1]}."]
    counts = ", ".join(f"{count:,} {word}" for count, word in ended)
    return [f"Last {plural(history.cycles, 'cycle')}: {counts}."]


def _time_sentences(texts: _Texts) -> list[str]:
    sync, change = texts.last_sync, texts.last_change
    return [
        f"Last completed sync: {_at(sync)}."
        if sync is not None
        else "No synchronization cycle has completed yet.",
        f"Last change at the source: {_at(change)}."
        if change is not None
        else "No change at the source has been seen yet.",
    ]
