"""OpenTelemetry: the spans and metrics of a scripted scenario match expected values exactly.

The scenario runs over real loopback HTTP (the generic REST fake, read by ``RestConnector``) on
every built-in store: a full sync, a throttled cycle, a failure, and a reset with its re-read.
The SDK's in-memory exporter and reader receive what incsync reports. Only durations vary from
run to run; they are checked as counts.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

import attrs
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceState
from opentelemetry.util.types import Attributes

from incsync import SourceState, StoreError, SyncEngine, SyncPolicy, telemetry
from incsync.connectors import InMemoryConnector, InMemorySource, RestConfig, RestConnector
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.errors import ConfigurationError
from incsync.records import Page, Record
from incsync.results import CycleResult, Outcome
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.timestamps import UTC
from tests.helpers import Store

KEY = "acme/items"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
TOKEN = "generic-secret-token-5f2c"


@attrs.frozen
class Recorded:
    """What the SDK received."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """incsync reporting to in-memory SDK providers for the test, then to the global ones."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Recorded(spans, reader)
    finally:
        telemetry.configure()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def rest_config(base_url: str) -> RestConfig:
    """The fake's items, 100 a page by cursor, ordered, as a user would configure them."""
    return RestConfig.from_mapping(
        {
            "base_url": base_url,
            "path": "/v1/items",
            "ordered": True,
            "filter": {"param": "updated_since", "format": "iso8601"},
            "records": {"path": "data.items", "id": "id", "updated_at": "meta.updated_at"},
            "auth": {"kind": "bearer", "secret": "TOKEN"},
            "paging": {"style": "cursor", "size": 100, "cursor_path": "meta.next_cursor"},
        }
    )


def page_spans(spans: list[ReadableSpan], cycle: ReadableSpan) -> list[tuple[str, Any, Any]]:
    """The cycle's child spans in order: name, attributes, and status (code, description).

    The one attribute that varies, a page's fetch time, is checked and left out.
    """
    assert cycle.context is not None
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == cycle.context.span_id
    ]
    found = []
    for span in sorted(children, key=lambda s: s.start_time or 0):
        attributes = dict(span.attributes or {})
        fetch_seconds = attributes.pop("incsync.page.fetch_seconds")
        assert isinstance(fetch_seconds, float)
        assert span.start_time is not None
        assert span.end_time is not None
        assert 0 <= fetch_seconds * 1e9 <= span.end_time - span.start_time
        found.append((span.name, attributes, (span.status.status_code, span.status.description)))
    return found


def cycle_attributes(result: CycleResult, generation: int) -> dict[str, object]:
    """The attributes the cycle's span must carry, from its result."""
    return {
        "incsync.source_key": KEY,
        "incsync.vendor": "rest",
        "incsync.cycle_id": result.cycle_id,
        "incsync.generation": generation,
        "incsync.outcome": result.outcome.value,
        "incsync.pages": result.pages,
        "incsync.records.fetched": result.fetched,
        "incsync.records.applied": result.applied,
        "incsync.records.already_applied": result.already_applied,
        "incsync.records.set_aside": result.rejected,
        "incsync.records.swept": result.swept,
    }


def page(number: int, records: int, set_aside: int = 0) -> tuple[str, Any, Any]:
    return (
        "incsync.page",
        {
            "incsync.page": number,
            "incsync.page.records": records,
            "incsync.page.set_aside": set_aside,
        },
        (StatusCode.UNSET, None),
    )


def retry(cause: str, wait: float) -> dict[str, object]:
    return {"incsync.retry.cause": cause, "incsync.retry.wait": wait, "incsync.page": 1}


def metric_points(reader: InMemoryMetricReader) -> dict[str, dict[frozenset[Any], Any]]:
    """Every data point of incsync's scope: sums and gauges by value, histograms by count."""
    data = reader.get_metrics_data()
    found: dict[str, dict[frozenset[Any], Any]] = {}
    for resource in () if data is None else data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "incsync":
                continue
            for metric in scope.metrics:
                points = found.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    key = frozenset((point.attributes or {}).items())
                    if isinstance(point, HistogramDataPoint):
                        points[key] = point.count
                    else:
                        assert isinstance(point, NumberDataPoint)
                        points[key] = point.value
    return found


def attrs_of(**attributes: str) -> frozenset[tuple[str, str]]:
    return frozenset(
        (f"incsync.{name.replace('__', '.')}", value) for name, value in attributes.items()
    )


def test_spans_and_metrics_of_a_full_sync_a_throttle_a_failure_and_a_reset(
    store: Store, recorded: Recorded
) -> None:
    """Each cycle is one root span with a child span per page, from its fetch to its write; the
    counters add up the four cycles' records, retries and waits; the gauge counts the store's
    sources per status colour."""
    fake = FakeGenericRest(paging="cursor", token=TOKEN)
    fake.load(250, T0)
    fake.add_malformed(
        {"id": "bad-1", "meta": {"updated_at": "yesterday"}}, T0 + timedelta(hours=1)
    )
    fake.clock.set(T0 + timedelta(days=1))
    sync = SyncEngine(store, clock=fake.clock, policy=SyncPolicy(safety_lag=timedelta(minutes=1)))
    sync.cancel("acme/paused")  # a second source, grey on the status screen
    stop_observing = telemetry.observe_sources(store, clock=fake.clock)

    def sleep(seconds: float) -> None:  # waits pass on the fake's clock, not the test's
        fake.clock.advance(timedelta(seconds=seconds))

    throttled = [httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "2"})]

    def throttle_once(_request: httpx.Request) -> httpx.Response | None:
        return throttled.pop() if throttled else None

    def outage(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": "internal"})

    try:
        with fake.serve() as base_url:
            options = HttpOptions(
                sleep=sleep, clock=fake.clock, retry=RetryPolicy(max_attempts=2, jitter=0.0)
            )
            connector = RestConnector(
                rest_config(base_url), secrets={"TOKEN": TOKEN}, options=options
            )
            with closing(connector):
                full = sync.run_cycle(KEY, connector)

                fake.clock.advance(timedelta(hours=1))
                for item_id in sorted(fake.ground_truth())[:5]:
                    fake.update(item_id, {"amount": 1})
                fake.clock.advance(timedelta(minutes=5))
                fake.add_fault(throttle_once)
                slowed = sync.run_cycle(KEY, connector)

                fake.clock.advance(timedelta(hours=1))
                fake.add_fault(outage)
                failed = sync.run_cycle(KEY, connector)

                fake.clear_faults()
                fake.clock.advance(timedelta(hours=1))
                sync.reset(KEY)
                again = sync.run_cycle(KEY, connector)
        points = metric_points(recorded.metrics)
    finally:
        stop_observing()

    # What the cycles did: the basis of every expected value below.
    assert [r.outcome for r in (full, slowed, failed, again)] == [
        Outcome.COMPLETED,
        Outcome.COMPLETED,
        Outcome.FAILED,
        Outcome.COMPLETED,
    ]
    # 250 items and the malformed one, 100 a page; then the item at the cursor, the five
    # updated ones and the malformed one again; then nothing; then everything, re-applied.
    assert [(r.fetched, r.applied, r.rejected, r.pages) for r in (full, slowed, failed, again)] == [
        (251, 250, 1, 3),
        (7, 5, 1, 1),
        (0, 0, 0, 0),
        (251, 250, 1, 3),
    ]

    spans = list(recorded.spans.get_finished_spans())
    cycles = [s for s in spans if s.name == "incsync.cycle"]
    assert len(spans) == 4 + 3 + 1 + 0 + 3
    assert [s.parent for s in cycles] == [None] * 4
    by_id = {dict(s.attributes or {})["incsync.cycle_id"]: s for s in cycles}
    assert list(by_id) == [r.cycle_id for r in (full, slowed, failed, again)]

    for result, generation in ((full, 0), (slowed, 0), (failed, 0), (again, 1)):
        span = by_id[result.cycle_id]
        assert dict(span.attributes or {}) == cycle_attributes(result, generation)
    assert (by_id[full.cycle_id].status.status_code, by_id[full.cycle_id].status.description) == (
        StatusCode.UNSET,
        None,
    )
    failed_span = by_id[failed.cycle_id]
    assert (failed_span.status.status_code, failed_span.status.description) == (
        StatusCode.ERROR,
        f"TransientSourceError: {failed.error}",
    )
    assert TOKEN not in (failed_span.status.description or "")

    whole = [page(1, 100), page(2, 100), page(3, 50, 1)]
    assert page_spans(spans, by_id[full.cycle_id]) == whole
    assert page_spans(spans, by_id[slowed.cycle_id]) == [page(1, 6, 1)]
    assert page_spans(spans, by_id[failed.cycle_id]) == []  # the first page never came
    assert page_spans(spans, by_id[again.cycle_id]) == whole

    # A retry is an event on the cycle's span, naming the page it delayed.
    events = {
        result.cycle_id: [(e.name, dict(e.attributes or {})) for e in by_id[result.cycle_id].events]
        for result in (full, slowed, failed, again)
    }
    assert events == {
        full.cycle_id: [],
        slowed.cycle_id: [("incsync.retry", retry("throttle", 2.0))],
        failed.cycle_id: [("incsync.retry", retry("error", 1.0))],
        again.cycle_id: [],
    }

    rest = attrs_of(vendor="rest")
    assert points == {
        "incsync.records.applied": {rest: 250 + 5 + 250},
        "incsync.records.set_aside": {rest: 3},
        "incsync.retries": {
            attrs_of(vendor="rest", retry__cause="throttle"): 1,
            attrs_of(vendor="rest", retry__cause="error"): 1,
        },
        "incsync.retry.wait": {
            attrs_of(vendor="rest", retry__cause="throttle"): 2.0,
            attrs_of(vendor="rest", retry__cause="error"): 1.0,
        },
        "incsync.cycle.duration": {
            attrs_of(vendor="rest", outcome="completed"): 3,
            attrs_of(vendor="rest", outcome="failed"): 1,
        },
        # Each page's fetch; its write is timed by its span alone.
        "incsync.page.duration": {attrs_of(vendor="rest", page__step="fetch"): 3 + 1 + 0 + 3},
        "incsync.sources": {
            attrs_of(status__color="grey"): 1,
            attrs_of(status__color="green"): 1,
            attrs_of(status__color="orange"): 0,
            attrs_of(status__color="red"): 0,
        },
    }


def sample(count: int = 30) -> InMemorySource:
    source = InMemorySource()
    for number in range(count):
        source.put({"id": f"r{number:03d}", "updated_at": T0 + timedelta(seconds=number)})
    return source


def test_spans_made_during_a_cycle_are_its_descendants(recorded: Recorded) -> None:
    """A host's span around the cycle is its parent; a span the sink makes while a page is
    written (an instrumented database client's) is the page span's child; one made while a page
    is fetched (an instrumented HTTP client's) is the cycle span's."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(recorded.spans))
    host = provider.get_tracer("host")

    def request(_page: int) -> None:
        with host.start_as_current_span("GET /items"):
            pass

    class TracedStore(InMemoryStore):
        def commit_page(self, *args: Any, **kwargs: Any) -> Any:
            with host.start_as_current_span("COMMIT"):
                return super().commit_page(*args, **kwargs)

    # One reader: every commit is a page's (a read in partitions also commits its plan and each
    # partition's end, under the cycle's span).
    connector = InMemoryConnector(sample(), page_size=20, before_page=request, partitions=1)
    with host.start_as_current_span("nightly job") as job:
        SyncEngine(TracedStore()).run_cycle(KEY, connector)
    spans = recorded.spans.get_finished_spans()

    def named(name: str) -> list[ReadableSpan]:
        return [span for span in spans if span.name == name]

    def parents(name: str) -> list[int | None]:
        return [None if s.parent is None else s.parent.span_id for s in named(name)]

    def ids(name: str) -> list[int | None]:
        return [None if s.context is None else s.context.span_id for s in named(name)]

    assert parents("incsync.cycle") == [job.get_span_context().span_id]
    assert parents("incsync.page") == ids("incsync.cycle") * 2
    assert parents("COMMIT") == ids("incsync.page")
    # Two pages, and the request that found the read ended.
    assert parents("GET /items") == ids("incsync.cycle") * 3


def test_a_skipped_cycle_is_a_span_with_its_outcome(recorded: Recorded) -> None:
    """A cycle that does not start (the source is cancelled) is a span without pages; its
    duration is counted under its outcome."""
    sync = SyncEngine(InMemoryStore())
    sync.cancel(KEY)
    result = sync.run_cycle(KEY, InMemoryConnector(sample()))
    [span] = recorded.spans.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "incsync.source_key": KEY,
        "incsync.vendor": "memory",
        "incsync.cycle_id": result.cycle_id,
        "incsync.outcome": "skipped_cancelled",
        "incsync.pages": 0,
        "incsync.records.fetched": 0,
        "incsync.records.applied": 0,
        "incsync.records.already_applied": 0,
        "incsync.records.set_aside": 0,
        "incsync.records.swept": 0,
    }
    assert metric_points(recorded.metrics)["incsync.cycle.duration"] == {
        attrs_of(vendor="memory", outcome="skipped_cancelled"): 1
    }


def test_an_exception_that_escapes_ends_the_spans_named_by_its_class_only(
    recorded: Recorded,
) -> None:
    """Ctrl-C in the second page's fetch ends the cycle's span as an error, named by the class (a
    message is not redacted, so it is not recorded), and the log context ends with the cycle."""

    def interrupt(page: int) -> None:
        if page == 1:
            raise KeyboardInterrupt(f"token {TOKEN}")

    # One reader: one page is written before the second one's fetch is interrupted.
    connector = InMemoryConnector(sample(), page_size=20, before_page=interrupt, partitions=1)
    with pytest.raises(KeyboardInterrupt):
        SyncEngine(InMemoryStore()).run_cycle(KEY, connector)
    statuses = [
        (s.name, s.status.status_code, s.status.description)
        for s in recorded.spans.get_finished_spans()
    ]
    assert statuses == [
        ("incsync.page", StatusCode.UNSET, None),
        ("incsync.cycle", StatusCode.ERROR, "KeyboardInterrupt"),
    ]
    assert telemetry.log_context() == {"source_key": None, "cycle_id": None}


def test_a_page_that_cannot_be_written_ends_its_span_as_an_error(recorded: Recorded) -> None:
    """A store failing while a page is written fails the cycle: the page's span names the
    error's class, the cycle's span the recorded (masked) error."""

    class FailingStore(InMemoryStore):
        def commit_page(self, *args: Any, **kwargs: Any) -> Any:
            raise StoreError(f"disk full; password={TOKEN}")

    # One reader: the first write is a page's (a read in partitions first writes its plan).
    connector = InMemoryConnector(sample(), partitions=1)
    result = SyncEngine(FailingStore()).run_cycle(KEY, connector)
    assert result.outcome is Outcome.FAILED
    statuses = [
        (s.name, s.status.status_code, s.status.description)
        for s in recorded.spans.get_finished_spans()
    ]
    assert statuses == [
        ("incsync.page", StatusCode.ERROR, "StoreError"),
        ("incsync.cycle", StatusCode.ERROR, "StoreError: disk full; password=***"),
    ]


def test_page_spans_time_each_fetch_at_the_source_while_the_page_before_is_written(
    recorded: Recorded,
) -> None:
    """Pages are read one ahead of the writes: a page's span and its fetch latency are the
    source's time for that page, not how long the engine then waited for it (almost nothing,
    the page having come while the one before was written)."""
    fetch, write = 0.05, 0.1

    class SlowStore(InMemoryStore):
        def commit_page(self, *args: Any, **kwargs: Any) -> Any:
            time.sleep(write)
            return super().commit_page(*args, **kwargs)

    # One reader: the fetch of each page overlaps the write of the one before, and only that.
    connector = InMemoryConnector(sample(30), page_size=10, page_delay=fetch, partitions=1)
    result = SyncEngine(SlowStore()).run_cycle(KEY, connector)
    assert (result.outcome, result.pages) == (Outcome.COMPLETED, 3)
    pages = sorted(
        (s for s in recorded.spans.get_finished_spans() if s.name == "incsync.page"),
        key=lambda s: int(s.attributes["incsync.page"]),  # type: ignore[index,arg-type]
    )
    assert [s.attributes["incsync.page"] for s in pages] == [1, 2, 3]  # type: ignore[index]
    for span in pages:
        assert span.attributes["incsync.page.records"] == 10  # type: ignore[index]
        assert span.attributes["incsync.page.fetch_seconds"] >= fetch * 0.9  # type: ignore[index,operator]
    # Page 2 was asked for as soon as page 1 was handed over: its span starts before page 1's ends.
    assert pages[1].start_time < pages[0].end_time  # type: ignore[operator]
    data = recorded.metrics.get_metrics_data()
    assert data is not None
    (fetches,) = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "incsync.page.duration"
        for point in metric.data.data_points
        if (point.attributes or {}).get("incsync.page.step") == "fetch"
    ]
    assert isinstance(fetches, HistogramDataPoint)
    assert (fetches.count, fetches.min >= fetch * 0.9) == (3, True)


def test_a_page_span_carries_its_own_fetch_whatever_order_pages_are_written_in(
    recorded: Recorded,
) -> None:
    """Readers of a full read in partitions fetch side by side and the engine writes their pages
    as they come: each page's span has that page's fetch (its records, its fetch time), not the
    fetch of the page fetched before it by another reader."""

    def pages(count: int, delay: float) -> Iterator[Page]:
        time.sleep(delay)
        yield Page(
            records=[Record(f"r{n}", datetime(2026, 1, 1, tzinfo=UTC), {}) for n in range(count)]
        )

    with telemetry.cycle(KEY, InMemoryConnector(InMemorySource())):
        first = next(iter(telemetry.fetched(pages(2, 0.0))))
        second = next(iter(telemetry.fetched(pages(5, 0.05))))
        # Written in the other order than fetched, as pages of two partitions may be.
        with telemetry.writing(second):
            pass
        with telemetry.writing(first):
            pass
    spans = [s for s in recorded.spans.get_finished_spans() if s.name == "incsync.page"]
    seen = [
        (s.attributes["incsync.page.records"], s.attributes["incsync.page.fetch_seconds"] >= 0.045)  # type: ignore[index,operator]
        for s in spans
    ]
    assert seen == [(5, True), (2, False)]


class DropsOneSource(Sampler):
    """Drops the cycles of ``DROPPED``, keeps the others; a child span follows its parent.

    It notes each span it is asked about (a ``ParentBased`` sampler would not ask its root
    sampler about children).
    """

    def __init__(self) -> None:
        self.asked: list[tuple[str, object]] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        source = (attributes or {}).get("incsync.source_key")
        self.asked.append((name, source))
        parent = trace.get_current_span(parent_context).get_span_context()
        keep = parent.trace_flags.sampled if parent.is_valid else source != DROPPED
        if not keep:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)  # the span keeps them

    def get_description(self) -> str:
        return "DropsOneSource"


DROPPED = "acme/dropped"


def test_a_cycle_the_sampler_drops_asks_for_no_page_spans_and_is_still_counted() -> None:
    """Where the sampler drops a cycle, its pages ask for no span (they would follow its
    decision), its trace is still the current one while its pages are written, and its metrics
    count as a kept cycle's do."""
    spans = InMemorySpanExporter()
    sampler = DropsOneSource()
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    current: dict[str, set[int]] = {KEY: set(), DROPPED: set()}

    class NotingStore(InMemoryStore):
        def commit_page(self, source_key: str, *args: Any, **kwargs: Any) -> Any:
            current[source_key].add(trace.get_current_span().get_span_context().trace_id)
            return super().commit_page(source_key, *args, **kwargs)

    telemetry.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        sync = SyncEngine(NotingStore())
        # One reader: every commit is a page's.
        kept = sync.run_cycle(KEY, InMemoryConnector(sample(), page_size=20, partitions=1))
        dropped = sync.run_cycle(DROPPED, InMemoryConnector(sample(), page_size=20, partitions=1))
    finally:
        telemetry.configure()
        tracer_provider.shutdown()
        meter_provider.shutdown()
    assert (kept.pages, dropped.pages) == (2, 2)
    assert sampler.asked == [
        ("incsync.cycle", KEY),
        ("incsync.page", None),
        ("incsync.page", None),
        ("incsync.cycle", DROPPED),
    ]
    names = [
        (s.name, dict(s.attributes or {}).get("incsync.page")) for s in spans.get_finished_spans()
    ]
    assert names == [("incsync.page", 1), ("incsync.page", 2), ("incsync.cycle", None)]
    # The dropped cycle's own trace (one id, not the invalid 0, not the kept cycle's) is current
    # while it writes its pages.
    assert [len(ids) for ids in current.values()] == [1, 1]
    assert 0 not in current[DROPPED] | current[KEY]
    assert current[DROPPED] != current[KEY]
    assert metric_points(reader) == {
        "incsync.cycle.duration": {attrs_of(vendor="memory", outcome="completed"): 2},
        "incsync.page.duration": {attrs_of(vendor="memory", page__step="fetch"): 4},
        "incsync.records.applied": {attrs_of(vendor="memory"): 60},
    }


def test_disabled_telemetry_reports_nothing(recorded: Recorded) -> None:
    """configure(enabled=False) takes the path of an installation without OpenTelemetry: no
    span, no metric; the result still has its cycle id."""
    telemetry.configure(enabled=False)
    result = SyncEngine(InMemoryStore()).run_cycle(KEY, InMemoryConnector(sample()))
    assert result.outcome is Outcome.COMPLETED
    assert result.cycle_id is not None
    assert recorded.spans.get_finished_spans() == ()
    assert metric_points(recorded.metrics) == {}


class BrokenStore(InMemoryStore):
    def list_states(self) -> Sequence[SourceState]:
        raise StoreError("the database is gone")


def test_the_sources_gauge_reports_nothing_while_a_store_cannot_list_its_sources(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that fails leaves a gap in the gauge, not a partial count, and a warning naming
    the error's class; a store no longer observed is not counted."""
    healthy, broken = InMemoryStore(), BrokenStore()
    SyncEngine(healthy).cancel(KEY)
    stop_healthy = telemetry.observe_sources(healthy)
    stop_broken = telemetry.observe_sources(broken)
    try:
        with caplog.at_level(logging.WARNING, logger="incsync"):
            assert "incsync.sources" not in metric_points(recorded.metrics)
        assert [r.getMessage() for r in caplog.records] == [
            "the sources per status colour were not counted: StoreError"
        ]
        stop_broken()
        assert (
            metric_points(recorded.metrics)["incsync.sources"][attrs_of(status__color="grey")] == 1
        )
        stop_healthy()
        assert "incsync.sources" not in metric_points(recorded.metrics)
    finally:
        stop_healthy()
        stop_broken()


class CountedStore(InMemoryStore):
    """Counts how often its states are listed."""

    def __init__(self) -> None:
        super().__init__()
        self.listed = 0

    def list_states(self) -> Sequence[SourceState]:
        self.listed += 1
        return super().list_states()


def seconds_of(clock: ManualClock) -> Callable[[], float]:
    """A monotonic timer, in seconds, that moves with ``clock``."""
    return lambda: clock().timestamp()


def test_the_sources_gauge_keeps_a_count_for_a_minute_then_lists_the_states_again(
    recorded: Recorded,
) -> None:
    """Collections within ``recount_every`` of a store's count reuse it (a source cancelled
    meanwhile is not seen yet); the first collection after it lists the states again."""
    store, clock = CountedStore(), ManualClock(T0)
    sync = SyncEngine(store)
    sync.cancel("acme/first")
    stop = telemetry.observe_sources(store, timer=seconds_of(clock))
    try:
        grey = attrs_of(status__color="grey")
        assert metric_points(recorded.metrics)["incsync.sources"][grey] == 1
        sync.cancel("acme/second")
        clock.advance(timedelta(seconds=59))
        assert metric_points(recorded.metrics)["incsync.sources"][grey] == 1
        assert store.listed == 1
        clock.advance(timedelta(seconds=1))
        assert metric_points(recorded.metrics)["incsync.sources"][grey] == 2
        assert store.listed == 2
    finally:
        stop()


def test_each_collector_counts_on_its_own_schedule(recorded: Recorded) -> None:
    """A second meter provider's first collection counts the store itself, and does not take the
    first provider's count; ``recount_every=timedelta(0)`` counts at every collection."""
    store, timer = CountedStore(), seconds_of(ManualClock(T0))
    SyncEngine(store).cancel(KEY)
    stop = telemetry.observe_sources(store, timer=timer)
    other = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[other])
    try:
        metric_points(recorded.metrics)
        telemetry.configure(meter_provider=provider)
        metric_points(other)
        assert store.listed == 2
        metric_points(recorded.metrics)  # the first provider's count is still fresh
        assert store.listed == 2

        stop = telemetry.observe_sources(store, recount_every=timedelta(0), timer=timer)
        for _ in range(3):
            assert metric_points(other)["incsync.sources"][attrs_of(status__color="grey")] == 1
        assert store.listed == 5
    finally:
        stop()
        provider.shutdown()


def test_a_negative_recount_interval_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="recount_every must not be negative"):
        telemetry.observe_sources(InMemoryStore(), recount_every=timedelta(seconds=-1))


NOT_INSTALLED = """
import sys
sys.modules["opentelemetry"] = None  # import opentelemetry now raises ImportError
from datetime import datetime, timezone
from incsync import SyncEngine
from incsync.connectors import InMemoryConnector, sample_source
from incsync.testing import InMemoryStore
source = sample_source(120, end=datetime(2026, 1, 1, tzinfo=timezone.utc))
result = SyncEngine(InMemoryStore()).run_cycle("acme/items", InMemoryConnector(source))
print(result.outcome.value, result.applied, len(result.cycle_id or ""))
print(sorted(name for name in sys.modules if "otel" in name or "opentelemetry" in name))
"""


def test_without_opentelemetry_a_cycle_runs_and_nothing_of_it_is_imported() -> None:
    """Where OpenTelemetry is not installed, cycles run as before, with their ids, and
    incsync's OpenTelemetry module is never imported."""
    done = subprocess.run(
        [sys.executable, "-c", NOT_INSTALLED],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == ["completed 120 16", "['opentelemetry']"]
