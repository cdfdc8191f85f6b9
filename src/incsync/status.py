"""What colour a source is on the status screen, and why: a pure, total classifier.

A host's "Automated Import" screen shows, for every source, the last change at the source, the last
sync and a coloured circle with hover text. :func:`classify_status` decides all of it from a few
facts and ``now`` (passed in, never read from the clock); :func:`status_of` reads those facts from
a stored :class:`~incsync.state.SourceState`::

    status = classify_status(last_change=..., last_sync=..., last_attempt=..., now=...)
    status.color.value   # "grey", "green", "orange" or "red"
    status.hover         # full sentences with exact timestamps

The first matching row decides (``StatusPolicy`` holds the thresholds; defaults in brackets):

===============================================  ======  =================  =========
the source                                       colour  reason             icon
===============================================  ======  =================  =========
was cancelled by the host                        grey    cancelled          pause
is stopped, or failed too often in a row (*)     red     stopped            cross
was reset                                        grey    resetting          refresh
has never completed a cycle                      grey    starting           hourglass
was not attempted when due (**)                  red     sync_overdue       clock
completed no cycle within ``recent_sync`` [3 h]  orange  retrying           redo
changed within ``recent_change`` [7 days]        green   recent_changes     check
otherwise (changed earlier, or never)            orange  no_recent_changes  minus
===============================================  ======  =================  =========

(*) The engine decides when a source stops, and the status trusts it. With a ``phase`` (as
:func:`status_of` passes the stored one), only ``Phase.STOPPED`` is stopped, whatever the count.
Without one (facts only), ``max_consecutive_failures`` [5] failed cycles in a row are, or
``max_auth_failures`` [2] when the last error was an ``AuthError``: the engine's default
thresholds, or a given engine's through :meth:`StatusPolicy.matching`.

(**) The next attempt was due more than ``recent_sync`` minus ``expected_interval`` [2 h] ago:
nothing has tried to sync for longer than the recent-sync window. The next attempt is due after
the last one by ``expected_interval`` [1 h], doubled for every failure in a row after the first,
at most ``backoff_cap`` [6 h] (:func:`incsync.policy.backoff_interval`, as the scheduler waits),
and never before a time the source asked to wait for (``not_before``). The last attempt is
``last_attempt`` (when a cycle last took the lease; without it, the last failure's time), or the
last completed sync when that is newer. Without failures or a wait, this reads: no attempt
within ``recent_sync``. A cycle that holds the source's lease now (``running_until`` after
``now``) is an attempt in progress, never overdue however long it has run.

The cases the four colours do not name, and why they are decided so:

- **Overdue** (nothing attempted when due): red, not orange. Green and orange both say
  "synchronization ran recently", which is false; red says "synchronization has stopped", which
  is true, and the person's next step is the same: get someone to look. The reason, the clock
  icon and the hover tell it apart from errors at the source: it names the time since which no
  attempt was made and when the next was due, and that the scheduler that starts cycles may not
  be running.
- **Failing, not stopped**: never red, however long the engine keeps retrying. While the last
  completed cycle is within ``recent_sync``, the colour of the last success stays, because one
  failed hourly cycle is routine; the label gains ", retrying". Once it is older, the source is
  orange "Retrying": it was tried recently, but no recent change could be seen. The hover says
  when the last attempt failed, why (the redacted error), how many attempts failed in a row, and
  when the next attempt is due (the source's wait, or the last attempt plus the backoff; "due
  now" once that time has passed). Only without a phase does it add after how many the source
  stops: the stored state does not record the engine's threshold, so with a phase it names none.
- **Attempted, neither completed nor failed**: a cycle started within the window and none
  completed within ``recent_sync``: orange "Retrying" as well (a long cycle, or a worker that died
  mid-cycle); so is a source waiting, as it asked, past the window. A cycle still holding its lease
  is running, however long ago it started: orange "Retrying" too, and the hover says since when.
- **Cancelled**: grey (neutral: the host chose it, nothing is wrong) with its own reason and pause
  icon; the hover says no transactions were deleted.
- **Records set aside** by the last cycle: the colour does not change (the rest was applied); the
  hover says how many and where to list them.
- **Counts that disagree**: when the last count of live records at the source differs from the
  host's (a drift, :class:`~incsync.state.CountCheck`), the colour does not change (a count is
  advice about data already applied, and a record written between the read and the count drifts
  it once); the hover says how many live records the source has, how many are imported, and when
  they were counted. A count that agrees is not mentioned.
- **Clock skew**: a time at most ``future_tolerance`` [5 min] ahead of ``now`` counts as now; one
  further ahead also counts as now for the colour, and the hover names the suspect clock.
- **History**: given a summary of the source's latest cycles (a
  :class:`~incsync.history.HistorySummary`, which the caller reads from the store), the hover says
  how they ended ("Last 24 cycles: 23 completed, 1 failed."); the colour does not change.
- **The source's clock**: when the newest skew the cycles measured (the summary's ``clock_skew``,
  see :mod:`incsync.clocks`) exceeds ``clock_skew_tolerance`` [2 min] either way, the hover says
  so ("The source's clock is 10 minutes behind this host's; times are read on the source's
  clock."): the engine keeps the cursor on the source's clock, so nothing is lost, but the times
  shown are the source's. The colour does not change.

**Until when**: the rows above that read the present compare it with a few instants (the next
attempt's due time plus the slack, the last sync plus ``recent_sync``, the last change plus
``recent_change``, a running cycle's lease end). ``SourceStatus.reason_until`` is the next of them
after ``now``: until then, the facts staying as they are, the reason (and so the colour, icon and
label) stays too. A screen that keeps statuses (the web console does) classifies a source again
when its state changed or that instant has come. Only the hover's relative words change sooner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from types import MappingProxyType

from incsync._status_decision import (
    _decided,
    _Facts,
    _facts,
    _next_attempt,
    _reason_until,
    _state_facts,
    _stop_after,
)
from incsync._status_hover import (
    _drift_sentences,
    _failure_sentences,
    _headline,
    _history_sentences,
    _next_step,
    _set_aside_sentences,
    _skew_sentences,
    _source_clock_sentences,
    _texts,
    _time_sentences,
)
from incsync._status_values import (
    DEFAULT_STATUS_POLICY,
    REASONS,
    RECENT_SYNC_CYCLES,
    SourceStatus,
    StatusColor,
    StatusIcon,
    StatusNote,
    StatusPolicy,
    StatusReason,
)
from incsync.history import HistorySummary
from incsync.humanize import resolve_zone
from incsync.state import ErrorInfo, Phase, SourceState

__all__ = [
    "DEFAULT_STATUS_POLICY",
    "REASONS",
    "RECENT_SYNC_CYCLES",
    "SourceStatus",
    "StatusColor",
    "StatusIcon",
    "StatusNote",
    "StatusPolicy",
    "StatusReason",
    "classify_status",
    "reason_of",
    "status_of",
    "statuses_of",
]


def classify_status(
    *,
    last_change: datetime | None,
    last_sync: datetime | None,
    error_count: int = 0,
    now: datetime,
    last_attempt: datetime | None = None,
    phase: Phase | None = None,
    last_error: ErrorInfo | None = None,
    not_before: datetime | None = None,
    rejected: int = 0,
    live_at_source: int | None = None,
    live_in_host: int | None = None,
    counted_at: datetime | None = None,
    running_until: datetime | None = None,
    history: HistorySummary | None = None,
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    zone: str | tzinfo = "UTC",
) -> SourceStatus:
    """Return what the status screen shows for one source (see the module docs for the rules).

    Pure and total: every combination of valid arguments gives a status, the same one each time.

    Args:
        last_change: The newest change seen at the source, or ``None``.
        last_sync: When the last cycle completed, or ``None`` if none has.
        error_count: Failed cycles in a row since the last completed one.
        now: The present (aware); the clock is never read here.
        last_attempt: When a cycle last started (took the lease), or ``None`` if unknown; then
            the last failure's time stands for it. Overdue (red) means no attempt when one was
            due; failing attempts are never overdue.
        phase: The source's phase as the engine recorded it. When given, only
            ``Phase.STOPPED`` means stopped and the policy's failure thresholds are not used;
            ``None`` (facts only) reads as new or active, from ``last_sync``, and decides
            stopped from ``error_count`` and the thresholds.
        last_error: What the last failed cycle died of (ignored while ``error_count`` is 0: it
            belongs to a cycle followed by a success).
        not_before: The source asked not to be called before this time.
        rejected: Records the last completed cycle set aside as malformed.
        live_at_source: Live records the source counted at its last count, or ``None`` if it
            was never counted (see :class:`~incsync.state.CountCheck`).
        live_in_host: Live transactions the host held at that count.
        counted_at: When that count was made; the three are given together or not at all.
        running_until: When the lease of the cycle running now expires (``None``, or a time not
            after ``now``: no cycle holds it). A running cycle is never overdue.
        history: How the source's latest cycles ended (see :mod:`incsync.history`), for the
            hover; ``None`` says nothing of them.
        policy: The thresholds.
        zone: The display zone for exact times, an IANA name or a ``tzinfo`` (default UTC).

    Returns:
        The colour, reason, label, icon, hover text, both times, and until when time alone
        leaves the reason as it is.

    Raises:
        NaiveDatetimeError: A datetime has no timezone.
        ConfigurationError: A count is negative, only some of the count facts are given, or
            ``zone`` is not a known IANA zone name.
    """
    facts = _facts(
        last_change=last_change,
        last_sync=last_sync,
        last_attempt=last_attempt,
        error_count=error_count,
        now=now,
        phase=phase,
        last_error=last_error,
        not_before=not_before,
        rejected=rejected,
        live_at_source=live_at_source,
        live_in_host=live_in_host,
        counted_at=counted_at,
        running_until=running_until,
    )
    return _status(facts, history, policy, zone)


def _status(
    facts: _Facts, history: HistorySummary | None, policy: StatusPolicy, zone: str | tzinfo
) -> SourceStatus:
    """Return the status of ``facts`` (see :func:`classify_status`)."""
    next_attempt = _next_attempt(facts, policy)
    texts = _texts(facts, resolve_zone(zone), policy.future_tolerance)
    stop_after = _stop_after(facts, policy)
    reason, deadlines = _decided(facts, policy, next_attempt)
    color, icon, label = REASONS[reason]
    stopped = reason is StatusReason.STOPPED
    next_step, notes = _next_step(reason, facts, texts, next_attempt, policy)
    skew = [
        *_skew_sentences(facts, texts, policy.future_tolerance),
        *_source_clock_sentences(history, policy.clock_skew_tolerance),
    ]
    drift = _drift_sentences(facts, texts)
    if facts.rejected:
        notes.append(StatusNote.RECORDS_SET_ASIDE)
    if drift:
        notes.append(StatusNote.COUNT_DRIFT)
    if skew:
        notes.append(StatusNote.CLOCK_SKEW)
    # "Retrying, retrying" says nothing twice; red needs no softening.
    if (
        StatusNote.LAST_ATTEMPT_FAILED in notes
        and color is not StatusColor.RED
        and reason is not StatusReason.RETRYING
    ):
        label = f"{label}, retrying"
    sentences = [
        *_headline(reason, policy, facts, texts, next_attempt),
        *_failure_sentences(facts, texts.error_at, stopped, stop_after),
        *next_step,
        *_set_aside_sentences(facts.rejected, policy),
        *drift,
        *skew,
        *_history_sentences(history),
        *_time_sentences(texts),
    ]
    return SourceStatus(
        color=color,
        reason=reason,
        label=label,
        icon=icon,
        hover=" ".join(sentences),
        last_change=texts.last_change,
        last_sync=texts.last_sync,
        notes=tuple(notes),
        reason_until=_reason_until(deadlines, facts.now),
    )


def status_of(
    state: SourceState,
    *,
    now: datetime,
    history: HistorySummary | None = None,
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    zone: str | tzinfo = "UTC",
) -> SourceStatus:
    """Return the status of a stored source (``classify_status`` over the state's facts).

    The facts include the source's last count check, if it has one.

    Args:
        state: The source's state, as the store holds it.
        now: The present (aware).
        history: How the source's latest cycles ended, e.g.
            ``summarize(engine.history(key, limit=SUMMARY_CYCLES))`` (see
            :mod:`incsync.history`); ``None`` leaves them out of the hover.
        policy: The thresholds; use :meth:`StatusPolicy.matching` to share the engine's.
        zone: The display zone, an IANA name or a ``tzinfo``.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    return _status(_state_facts(state, now), history, policy, zone)


def reason_of(
    state: SourceState, *, now: datetime, policy: StatusPolicy = DEFAULT_STATUS_POLICY
) -> StatusReason:
    """Return why a stored source has its colour (:data:`REASONS` gives the colour), and no text.

    The decision of :func:`status_of`, without the hover's sentences and times: what counting
    sources per colour needs (the ``incsync.sources`` gauge of :mod:`incsync.telemetry`).

    Args:
        state: The source's state, as the store holds it.
        now: The present (aware).
        policy: The thresholds.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
    """
    facts = _state_facts(state, now)
    return _decided(facts, policy, _next_attempt(facts, policy))[0]


def statuses_of(
    states: Sequence[SourceState],
    *,
    now: datetime,
    histories: Mapping[str, HistorySummary] = MappingProxyType({}),
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    zone: str | tzinfo = "UTC",
) -> list[tuple[str, SourceStatus]]:
    """Return ``(key, status)`` for each state, ready for :mod:`incsync.views`.

    Args:
        states: The sources' states.
        now: The present (aware).
        histories: Each source's history summary by key (see :func:`status_of`); a source
            without one has none in its hover.
        policy: The thresholds.
        zone: The display zone.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    tz = resolve_zone(zone)
    return [
        (
            state.key,
            status_of(state, now=now, history=histories.get(state.key), policy=policy, zone=tz),
        )
        for state in states
    ]
