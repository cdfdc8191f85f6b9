"""What a running cycle tells the host's monitoring: log context, and OpenTelemetry when installed.

Every cycle gets an id (:attr:`~incsync.results.CycleResult.cycle_id`), and while it runs, a
context variable holds its source key and id: :class:`CycleContextFilter` puts both on every log
record a handler sees (incsync's own lines, and the host's lines from inside the cycle: its sink,
its connector), whatever the handler writes: plain text, JSON, structlog.

With OpenTelemetry's API installed (``pip install 'incsync[otel]'``), the engine and the connector
toolkit also report through it, to the providers the host configured (the global ones, or those
given to :func:`configure`); see ``docs/observability.md`` for the names:

* a span per cycle (``incsync.cycle``) with a child span per page (``incsync.page``), from when
  the page was asked for until it is written with its checkpoint; a retried request is an event
  on the cycle's span;
* counters of records applied and set aside, of retries and of the seconds waited before them;
  histograms of cycle duration and page latency; an observable gauge of sources per status colour
  for the stores given to :func:`observe_sources` (decided by :func:`incsync.status.reason_of`).

Metric attributes name the vendor, never the source: a fleet of ten thousand sources would be
ten thousand series per metric. Spans (and log records) name the source.

Without OpenTelemetry (or after ``configure(enabled=False)``) the cycle only sets its context
variable: :func:`fetched` hands the pages back untouched and :func:`writing` is a shared null
context. With it, a cycle of a few pages costs a few spans and metric updates: the page's span
covers its fetch and its write (rather than a span for each), since the SDK's spans cost tens of
microseconds each.

A host uses :class:`CycleContextFilter` (or :func:`log_context`), :func:`configure` and
:func:`observe_sources`; :func:`cycle`, :func:`fetched`, :func:`writing`, :func:`written` and
:func:`retried` are where the engine and the connector toolkit report.

Whatever is recorded is already redacted: error texts come from the cycle's result, and an
exception that escapes is named by its class only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING

from incsync._sources_gauge import DEFAULT_RECOUNT_EVERY, SourceColours, observe_sources
from incsync.records import Page
from incsync.results import CycleResult

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from incsync._otel import OpenCycle, Otel, PageFetch

__all__ = [
    "DEFAULT_RECOUNT_EVERY",
    "CycleContextFilter",
    "CycleTelemetry",
    "acting_on",
    "configure",
    "cycle",
    "fetched",
    "log_context",
    "observe_sources",
    "retried",
    "writing",
    "written",
]

_CURRENT: ContextVar[CycleTelemetry | None] = ContextVar("incsync_cycle", default=None)
# The source a reset, rewind, cancel or resume acts on: no cycle runs, yet its lines name it.
_ACTED_ON: ContextVar[str | None] = ContextVar("incsync_acted_on", default=None)
_NOTHING: AbstractContextManager[None] = nullcontext()


class _Backend:
    """The OpenTelemetry instruments in use: resolved at the first cycle, or by :func:`configure`.

    Resolving late keeps ``import incsync`` from importing OpenTelemetry, and lets a host set its
    providers after importing incsync.
    """

    lock = threading.Lock()
    resolved = False
    otel: Otel | None = None


def _load(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
) -> Otel | None:
    try:
        from incsync._otel import Otel  # only where OpenTelemetry is installed
    except ImportError:
        return None
    return Otel(tracer_provider, meter_provider, SourceColours())


def _otel() -> Otel | None:
    if not _Backend.resolved:
        with _Backend.lock:
            if not _Backend.resolved:
                _Backend.otel = _load(None, None)
                _Backend.resolved = True
    return _Backend.otel


def configure(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    enabled: bool = True,
) -> None:
    """Choose where incsync's spans and metrics go; by default, OpenTelemetry's global providers.

    Call it before the cycles it should affect start. Without OpenTelemetry installed it changes
    nothing: there is nothing to report to.

    Args:
        tracer_provider: Receives the spans instead of the global tracer provider.
        meter_provider: Receives the metrics instead of the global meter provider.
        enabled: ``False`` reports nothing through OpenTelemetry, as if it were not installed
            (log records still carry the source key and cycle id).
    """
    with _Backend.lock:
        _Backend.otel = _load(tracer_provider, meter_provider) if enabled else None
        _Backend.resolved = True


def _vendor_of(connector: object) -> str:
    """The connector's ``vendor`` (every built-in connector has one), else its class name."""
    vendor = getattr(connector, "vendor", None)
    return vendor if isinstance(vendor, str) and vendor else type(connector).__name__


class CycleTelemetry:
    """One running cycle as logs and OpenTelemetry see it: what :func:`cycle` returns.

    Attributes:
        cycle_id: The cycle's id: 16 hex digits, random.
        source_key: The source the cycle syncs.
        vendor: The connector's vendor, the attribute of its metrics.
        pages: Pages fetched so far.
        fetched: The fetches of pages not yet written, by the page (its ``id``: a page is held
            until it is written, so no other page has its id meanwhile). A reading thread adds
            each page's as it comes (:mod:`incsync.pipeline`: one page ahead, and several
            readers at once in a full read in partitions), and the page's span takes that
            page's when the engine writes it, whichever reader fetched it.
    """

    __slots__ = (
        "_applied",
        "_otel",
        "_set_aside",
        "_span",
        "_token",
        "counting",
        "cycle_id",
        "fetched",
        "pages",
        "source_key",
        "vendor",
    )

    def __init__(self, source_key: str, vendor: str, otel: Otel | None) -> None:
        self.cycle_id = os.urandom(8).hex()
        self.source_key = source_key
        self.vendor = vendor
        self.pages = 0
        # Added in the reading threads, taken in the engine's: a dict's item assignment and pop
        # are atomic; the page count, read and written, is counted under the lock.
        self.fetched: dict[int, PageFetch] = {}
        self.counting = threading.Lock()
        self._otel = otel
        self._span: OpenCycle | None = None
        self._applied = 0
        self._set_aside = 0
        self._token: Token[CycleTelemetry | None] | None = None

    def __enter__(self) -> CycleTelemetry:
        self._token = _CURRENT.set(self)
        if self._otel is not None:
            self._span = self._otel.start_cycle(self.source_key, self.vendor, self.cycle_id)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._otel is not None and self._span is not None:
                self._otel.end_span(self._span.opened, error)
        finally:
            if self._token is not None:
                _CURRENT.reset(self._token)

    def generation(self, generation: int) -> None:
        """Note the generation the cycle reads under (known once the state is loaded)."""
        if self._otel is not None and self._span is not None:
            self._otel.cycle_generation(self._span, generation)

    def ended(self, result: CycleResult) -> CycleResult:
        """Record how the cycle ended (outcome, counts, duration); return ``result``."""
        if self._otel is not None and self._span is not None:
            self._otel.cycle_ended(self._span, result)
        return result

    def _written(self, applied: int, set_aside: int) -> None:
        if self._otel is not None and self._span is not None:
            self._otel.records(self._span, applied - self._applied, set_aside - self._set_aside)
        self._applied, self._set_aside = applied, set_aside


def cycle(source_key: str, connector: object) -> CycleTelemetry:
    """Return the telemetry of a new cycle of ``source_key``: enter it for the cycle's duration.

    While it is entered, log records carry the source key and the cycle's id, and the cycle's span
    is the current one (OpenTelemetry's context), so spans the host makes meanwhile (a sink's
    database calls, an instrumented HTTP client) are its descendants.
    """
    return CycleTelemetry(source_key, _vendor_of(connector), _otel())


def fetched(pages: Iterable[Page]) -> Iterable[Page]:
    """Return ``pages`` with each fetch timed, when OpenTelemetry reports.

    The fetch latency of each page is recorded, and when it was asked for is kept for its span
    (:func:`writing`). Wrap the connector's read itself, inside the read-ahead
    (:mod:`incsync.pipeline`), so each fetch is timed in the thread that makes it. A fetch that
    finds the read ended makes no span: its requests, if any, are in the cycle's.
    """
    current = _CURRENT.get()
    if current is None or current._otel is None or current._span is None:
        return pages
    return current._otel.fetched_pages(pages, current, current._span)


def writing(page: Page) -> AbstractContextManager[None]:
    """Return a context for writing ``page``: its span, made current.

    ``page`` is the page as :func:`fetched` handed it over (the engine may write a copy with
    more marks: the fetch is found by the page that was fetched).

    The span starts when the page was asked for, with its fetch time as an attribute, so the
    trace shows the fetch and the write of each page (a page read ahead starts while the one
    before is written); the write's time is the rest of the span, and no metric records it. A
    cycle the sampler dropped makes no page spans.
    """
    current = _CURRENT.get()
    if current is None or current._otel is None:
        return _NOTHING
    if current._span is not None and not current._span.recording:
        # Where the sampler dropped the cycle, its pages' spans would follow its decision (the
        # SDK's samplers are parent-based by default), and a span started only to be dropped costs
        # nearly what a kept one does. The cycle's span stays current: spans made meanwhile still
        # carry its trace.
        return _NOTHING
    return current._otel.page_span(current, page)


def written(applied: int, set_aside: int) -> None:
    """Count what the running cycle's pages did, from its running totals so far.

    Args:
        applied: Records the cycle applied so far.
        set_aside: Records it set aside so far.
    """
    current = _CURRENT.get()
    if current is not None:
        current._written(applied, set_aside)


def retried(vendor: str | None, wait: float, *, throttled: bool) -> None:
    """Count a retry of a request, and the seconds waited before it.

    Args:
        vendor: The vendor the request went to; the running cycle's when it has one.
        wait: Seconds waited before the retry.
        throttled: Whether the vendor asked to slow down (else the request failed).
    """
    otel = _otel()
    if otel is None:
        return
    current = _CURRENT.get()
    if current is None:
        otel.retried(vendor or "unknown", wait, throttled=throttled, page=None)
    else:
        otel.retried(current.vendor, wait, throttled=throttled, page=current.pages + 1)


@contextmanager
def acting_on(source_key: str) -> Iterator[None]:
    """Name ``source_key`` in the log context while a reset, rewind, cancel or resume runs.

    No cycle runs then, so ``cycle_id`` stays ``None``; the store's own lines meanwhile name the
    source too.
    """
    token = _ACTED_ON.set(source_key)
    try:
        yield
    finally:
        _ACTED_ON.reset(token)


def log_context() -> dict[str, str | None]:
    """Return the running cycle's ``source_key`` and ``cycle_id``.

    Outside a cycle, ``source_key`` is the source an action (:func:`acting_on`) is acting on,
    else ``None``, and ``cycle_id`` is ``None``. For logging set-ups that do not pass through
    :mod:`logging` handlers (a structlog processor, say); :class:`CycleContextFilter` serves those
    that do.
    """
    current = _CURRENT.get()
    if current is None:
        return {"source_key": _ACTED_ON.get(), "cycle_id": None}
    return {"source_key": current.source_key, "cycle_id": current.cycle_id}


class CycleContextFilter(logging.Filter):
    """Sets ``source_key`` and ``cycle_id`` on every record (see :func:`log_context`).

    Add it to a handler (``handler.addFilter(CycleContextFilter())``): it then serves every logger
    whose records reach that handler, and a format can name ``%(source_key)s`` and
    ``%(cycle_id)s``. A record that already has either (from ``extra=``) keeps its own. It never
    drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the record's ``source_key`` and ``cycle_id``; keep it."""
        for name, value in log_context().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True
