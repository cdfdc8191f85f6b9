"""incsync's spans and instruments on OpenTelemetry's API; imported only where it is installed.

:mod:`incsync.telemetry` decides when to report and holds the cycle's context; this module only
speaks OpenTelemetry. Its names and attributes are listed in ``docs/observability.md``.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import attrs
from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, Status, StatusCode

from incsync.records import Page
from incsync.results import CycleResult, Outcome

if TYPE_CHECKING:
    from incsync.telemetry import CycleTelemetry

__all__ = ["OpenCycle", "OpenSpan", "Otel", "PageFetch"]

SCOPE = "incsync"
"""The instrumentation scope of every span and instrument."""

# Attribute names: incsync's own namespace, as OpenTelemetry asks of libraries.
SOURCE_KEY = "incsync.source_key"
CYCLE_ID = "incsync.cycle_id"
VENDOR = "incsync.vendor"
GENERATION = "incsync.generation"
OUTCOME = "incsync.outcome"
PAGE = "incsync.page"
STEP = "incsync.page.step"
RETRY_CAUSE = "incsync.retry.cause"
COLOR = "incsync.status.color"

# Bucket bounds in seconds (the SDK's default ones suit milliseconds): from a quiet incremental
# cycle to an hour's full re-read, and from a loopback page to a slow vendor's.
CYCLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
PAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _version() -> str | None:
    """Return the installed version of incsync, the scope's version (``None`` when unknown)."""
    try:
        return importlib.metadata.version("incsync")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return None


@attrs.frozen
class PageFetch:
    """One page's fetch: its number, when it was asked for and came, its records.

    Times are ``time.time_ns()``; ``records`` and ``set_aside`` count its well-formed and
    set-aside records.
    """

    number: int
    asked: int
    came: int
    records: int
    set_aside: int


@attrs.frozen
class OpenSpan:
    """A span that was made the current one, with the token that restores the context before."""

    span: Span
    token: object


@attrs.frozen
class OpenCycle:
    """A cycle's span, made current, and the attributes of its metrics, built once per cycle.

    The SDK reads a measurement's attributes and keeps no reference it would change, so one
    mapping serves every update of the cycle's metrics.

    ``recording`` is the span's ``is_recording()``, asked once: a cycle the sampler dropped makes
    no page spans and sets no attributes (see :func:`incsync.telemetry.writing`).
    """

    opened: OpenSpan
    vendor: Mapping[str, str]
    fetch: Mapping[str, str]
    recording: bool


class Otel:
    """incsync's tracer and instruments, on the given providers or the global ones.

    Args:
        tracer_provider: Where spans go; ``None`` for the global provider.
        meter_provider: Where metrics go; ``None`` for the global provider.
        colours: Returns the number of sources per status colour, or ``None`` to observe nothing.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        colours: Callable[[], Mapping[str, int] | None],
    ) -> None:
        version = _version()
        self.tracer = trace.get_tracer(SCOPE, version, tracer_provider)
        meter = metrics.get_meter(SCOPE, version or "", meter_provider)
        self.cycle_duration = meter.create_histogram(
            "incsync.cycle.duration",
            unit="s",
            description="How long cycles took, by outcome.",
            explicit_bucket_boundaries_advisory=CYCLE_BUCKETS,
        )
        self.page_duration = meter.create_histogram(
            "incsync.page.duration",
            unit="s",
            description="How long pages took to fetch (step fetch); a page's write is timed by "
            "its span.",
            explicit_bucket_boundaries_advisory=PAGE_BUCKETS,
        )
        self.applied = meter.create_counter(
            "incsync.records.applied",
            unit="{record}",
            description="Records written to the sink as new or newer versions.",
        )
        self.set_aside = meter.create_counter(
            "incsync.records.set_aside",
            unit="{record}",
            description="Records set aside as malformed.",
        )
        self.retries = meter.create_counter(
            "incsync.retries",
            unit="{retry}",
            description="Requests retried, because the vendor throttled or the request failed.",
        )
        self.retry_wait = meter.create_counter(
            "incsync.retry.wait",
            unit="s",
            description="Seconds waited before retrying requests.",
        )
        self._colours = colours
        meter.create_observable_gauge(
            "incsync.sources",
            callbacks=[self._observe_sources],
            unit="{source}",
            description="Sources of the observed stores per status colour.",
        )

    def _observe_sources(self, _options: CallbackOptions) -> Iterable[Observation]:
        counts = self._colours()
        if counts is None:
            return []
        return [Observation(count, {COLOR: colour}) for colour, count in counts.items()]

    def _start(self, name: str, attributes: Mapping[str, str | int]) -> OpenSpan:
        span = self.tracer.start_span(name, attributes=attributes)
        return OpenSpan(span, context.attach(trace.set_span_in_context(span)))

    def end_span(self, opened: OpenSpan | None, error: BaseException | None) -> None:
        """End a span made current by this module; an exception names its class only."""
        if opened is None:
            return
        try:
            if error is not None:
                # Only the class: the message of an exception that escapes is not redacted.
                opened.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            opened.span.end()
        finally:
            context.detach(opened.token)  # type: ignore[arg-type]

    def start_cycle(self, source_key: str, vendor: str, cycle_id: str) -> OpenCycle:
        """Start the cycle's span and make it the current one."""
        opened = self._start(
            "incsync.cycle", {SOURCE_KEY: source_key, VENDOR: vendor, CYCLE_ID: cycle_id}
        )
        return OpenCycle(
            opened,
            {VENDOR: vendor},
            {VENDOR: vendor, STEP: "fetch"},
            recording=opened.span.is_recording(),
        )

    @staticmethod
    def cycle_generation(cycle: OpenCycle, generation: int) -> None:
        """Put the generation on the cycle's span."""
        if cycle.recording:
            cycle.opened.span.set_attribute(GENERATION, generation)

    def cycle_ended(self, cycle: OpenCycle, result: CycleResult) -> None:
        """Put the result on the cycle's span and record its duration."""
        self.cycle_duration.record(
            result.duration.total_seconds(), {**cycle.vendor, OUTCOME: result.outcome.value}
        )
        if not cycle.recording:
            return
        span = cycle.opened.span
        span.set_attributes(
            {
                OUTCOME: result.outcome.value,
                "incsync.pages": result.pages,
                "incsync.records.fetched": result.fetched,
                "incsync.records.applied": result.applied,
                "incsync.records.already_applied": result.already_applied,
                "incsync.records.set_aside": result.rejected,
                "incsync.records.swept": result.swept,
            }
        )
        if result.outcome is Outcome.FAILED:
            # The result's error is redacted already.
            span.set_status(Status(StatusCode.ERROR, f"{result.error_class}: {result.error}"))

    def fetched_pages(
        self, pages: Iterable[Page], cycle: CycleTelemetry, opened: OpenCycle
    ) -> Iterator[Page]:
        """Yield ``pages``, noting when each was asked for and came; record its fetch latency.

        It runs where the connector reads (the reading thread, one page ahead of the writes), so
        the latency is the source's, not the engine's wait. No span is made here: the page's span
        starts when it was asked for (see :meth:`page_span`), and a fetch that finds the read
        ended makes none.
        """
        iterator = iter(pages)
        latency, spans = opened.fetch, opened.recording
        while True:
            asked, began = time.time_ns(), time.perf_counter()
            try:
                page = next(iterator)
            except StopIteration:
                return
            self.page_duration.record(time.perf_counter() - began, latency)
            with cycle.counting:
                cycle.pages += 1
                number = cycle.pages
            if spans:  # kept for the page's span: a dropped cycle's pages make none
                cycle.fetched[id(page)] = PageFetch(
                    number, asked, time.time_ns(), len(page.records), len(page.rejected)
                )
            yield page

    def page_span(self, cycle: CycleTelemetry, page: Page) -> _PageSpan:
        """Return a context that writes ``page`` in its span."""
        return _PageSpan(self, cycle, page)

    def records(self, cycle: OpenCycle, applied: int, set_aside: int) -> None:
        """Count records applied and set aside."""
        if applied:
            self.applied.add(applied, cycle.vendor)
        if set_aside:
            self.set_aside.add(set_aside, cycle.vendor)

    def retried(self, vendor: str, wait: float, *, throttled: bool, page: int | None) -> None:
        """Count a retry and its wait; note it on the current span (the cycle's, in a fetch)."""
        cause = "throttle" if throttled else "error"
        attributes = {VENDOR: vendor, RETRY_CAUSE: cause}
        self.retries.add(1, attributes)
        self.retry_wait.add(wait, attributes)
        event: dict[str, str | float | int] = {RETRY_CAUSE: cause, "incsync.retry.wait": wait}
        if page is not None:
            event[PAGE] = page
        trace.get_current_span().add_event("incsync.retry", event)


class _PageSpan:
    """The span of one page, current while the page is written.

    It starts when the page was asked for, with its fetch time as an attribute, so the trace shows
    the fetch and the write of each page; the write's time is the rest of the span. (A class, not
    a generator-based context manager: it is entered once per page.)
    """

    __slots__ = ("_cycle", "_opened", "_otel", "_page")

    def __init__(self, otel: Otel, cycle: CycleTelemetry, page: Page) -> None:
        self._otel = otel
        self._cycle = cycle
        self._page = page
        self._opened: OpenSpan | None = None

    def __enter__(self) -> None:
        cycle = self._cycle
        fetch = cycle.fetched.pop(id(self._page), None)
        if fetch is None:  # a page not fetched through telemetry.fetched (not timed)
            now = time.time_ns()
            fetch = PageFetch(cycle.pages, now, now, 0, 0)
        span = self._otel.tracer.start_span(
            "incsync.page",
            attributes={
                PAGE: fetch.number,
                "incsync.page.records": fetch.records,
                "incsync.page.set_aside": fetch.set_aside,
                # An attribute, not an event: an event costs as much again as the attributes.
                "incsync.page.fetch_seconds": (fetch.came - fetch.asked) / 1e9,
            },
            start_time=fetch.asked,
        )
        self._opened = OpenSpan(span, context.attach(trace.set_span_in_context(span)))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._otel.end_span(self._opened, error)
