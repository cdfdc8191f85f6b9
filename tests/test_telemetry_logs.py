"""Log records name their source and cycle: a context variable and a filter for any handler."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta

import httpx
import structlog

from incsync import SyncEngine, SyncPolicy
from incsync.connectors import InMemoryConnector, InMemorySource, RestConfig, RestConnector
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.results import Outcome
from incsync.scheduling import SourcePlan, run_due
from incsync.telemetry import CycleContextFilter, log_context
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.timestamps import UTC

T0 = datetime(2024, 5, 1, tzinfo=UTC)
host_logger = logging.getLogger("host.app")


def source(count: int = 30) -> InMemorySource:
    records = InMemorySource()
    for number in range(count):
        records.put({"id": f"r{number:03d}", "updated_at": T0 + timedelta(seconds=number)})
    return records


@contextmanager
def handled(handler: logging.Handler) -> Iterator[None]:
    """``handler`` on the root logger, with the filter, at DEBUG for incsync and the host."""
    handler.addFilter(CycleContextFilter())
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("incsync", "host")}
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class Collect(logging.Handler):
    """Keeps the records it handles, after its filters ran."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_records_of_a_cycle_carry_its_source_and_id_whoever_logged_them() -> None:
    """The engine's lines and the host's own (from its connector, inside the cycle) carry the
    source key and the cycle's id, the result's; a line before or after the cycle carries none."""
    collect = Collect()

    def before_page(page: int) -> None:
        host_logger.info("reading page %d", page)

    engine = SyncEngine(InMemoryStore(), clock=ManualClock(T0 + timedelta(days=1)))
    with handled(collect):
        host_logger.info("before")
        result = engine.run_cycle(
            "acme/items",
            # One reader: the hook logs pages 0, 1 and 2 of the one window, in order.
            InMemoryConnector(source(), page_size=20, before_page=before_page, partitions=1),
        )
        host_logger.info("after")
    seen = [(r.name, r.getMessage()) for r in collect.records]
    contexts = [(r.source_key, r.cycle_id) for r in collect.records]  # type: ignore[attr-defined]
    assert seen[0] == ("host.app", "before")
    assert seen[-1] == ("host.app", "after")
    assert seen[1:4] == [("host.app", f"reading page {page}") for page in (0, 1, 2)]
    assert seen[-2][1].startswith("source acme/items: cycle completed, 30 fetched")
    assert contexts[0] == contexts[-1] == (None, None)
    assert set(contexts[1:-1]) == {("acme/items", result.cycle_id)}


def test_a_retried_request_is_logged_with_its_source() -> None:
    """The connector toolkit's line about a throttled attempt (logged at INFO: routine) names
    the source and cycle, though the toolkit knows neither."""
    fake = FakeGenericRest(paging="cursor", token="generic-secret-token-5f2c")
    fake.load(10, T0)
    fake.clock.set(T0 + timedelta(days=1))
    throttled = [httpx.Response(429, json={"error": "slow"}, headers={"Retry-After": "1"})]
    fake.add_fault(lambda _request: throttled.pop() if throttled else None)
    config = {
        "path": "/v1/items",
        "filter": {"param": "updated_since", "format": "iso8601"},
        "records": {"path": "data.items", "id": "id", "updated_at": "meta.updated_at"},
        "auth": {"kind": "bearer", "secret": "TOKEN"},
        "paging": {"style": "cursor", "size": 100, "cursor_path": "meta.next_cursor"},
    }
    collect = Collect()
    engine = SyncEngine(InMemoryStore(), clock=fake.clock, policy=SyncPolicy())
    with fake.serve() as base_url, handled(collect):
        options = HttpOptions(sleep=lambda _s: None, clock=fake.clock, retry=RetryPolicy(jitter=0))
        connector = RestConnector(
            RestConfig.from_mapping({"base_url": base_url, **config}),
            secrets={"TOKEN": fake.token},
            options=options,
        )
        with closing(connector):
            result = engine.run_cycle("acme/api", connector)
    assert result.outcome is Outcome.COMPLETED
    [retried] = [r for r in collect.records if "retrying in" in r.getMessage()]
    assert (retried.name, retried.levelno) == ("incsync.connectors", logging.INFO)
    assert (retried.source_key, retried.cycle_id) == ("acme/api", result.cycle_id)  # type: ignore[attr-defined]


def test_cycles_on_threads_each_name_their_own_source() -> None:
    """Cycles running side by side on a pool each log under their own source and id."""
    collect = Collect()
    keys = [f"acme/{name}" for name in ("a", "b", "c", "d")]
    plans = [SourcePlan(key, timedelta(hours=1)) for key in keys]
    with handled(collect):
        results = run_due(
            SyncEngine(InMemoryStore()),
            plans,
            lambda _key: InMemoryConnector(source(200), page_size=10),
            max_workers=4,
            per_account_limit=1,
        )
    ids = {result.source_key: result.cycle_id for result in results}
    assert len(set(ids.values())) == len(keys)
    ended = [r for r in collect.records if "cycle completed" in r.getMessage()]
    assert sorted((r.source_key, r.cycle_id) for r in ended) == sorted(ids.items())  # type: ignore[attr-defined]
    for record in ended:
        assert record.getMessage().startswith(f"source {record.source_key}: ")  # type: ignore[attr-defined]


def test_a_plain_format_names_them() -> None:
    """A text format can name ``%(source_key)s`` and ``%(cycle_id)s`` on every line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(source_key)s %(cycle_id)s %(levelname)s %(message)s"))
    engine = SyncEngine(InMemoryStore())
    with handled(handler):
        result = engine.run_cycle("acme/items", InMemoryConnector(source()))
        engine.reset("acme/items", actor="ops")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith(
        f"acme/items {result.cycle_id} INFO source acme/items: cycle completed"
    )
    # A reset runs no cycle: its line names the source, and no cycle.
    assert (
        lines[1]
        == "acme/items None INFO source acme/items reset by ops: the next cycle re-reads everything"
    )


def test_structlog_renders_them_as_json() -> None:
    """With structlog formatting the standard library's records (``ExtraAdder``), each JSON line
    has ``source_key`` and ``cycle_id``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
        )
    )
    with handled(handler):
        result = SyncEngine(InMemoryStore()).run_cycle("acme/items", InMemoryConnector(source()))
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["source_key"], line["cycle_id"], line["level"]) == (
        "acme/items",
        result.cycle_id,
        "info",
    )
    assert line["event"].startswith("source acme/items: cycle completed")


def test_a_record_keeps_what_it_was_given_and_the_context_is_readable_directly() -> None:
    """``extra=`` wins over the filter; outside a cycle the context is empty."""
    collect = Collect()
    with handled(collect):
        host_logger.info("mine", extra={"source_key": "own/key"})
    [record] = collect.records
    assert (record.source_key, record.cycle_id) == ("own/key", None)  # type: ignore[attr-defined]
    assert log_context() == {"source_key": None, "cycle_id": None}


def test_reset_rewind_cancel_and_resume_lines_name_their_source_without_a_cycle() -> None:
    """No cycle runs for an action on a source, yet its lines name that source."""
    engine = SyncEngine(InMemoryStore())
    engine.run_cycle("acme/api", InMemoryConnector(source(5), page_size=5))
    collect = Collect()
    with handled(collect):
        engine.cancel("acme/api", actor="ana")
        engine.resume("acme/api", actor="ana")
        engine.rewind("acme/api", T0)
        engine.reset("acme/api", actor="ana")
    actions = [r for r in collect.records if r.name.startswith("incsync")]
    assert [r.getMessage().split(" ")[2] for r in actions] == [
        "cancelled",
        "resumed",
        "rewound",
        "reset",
    ]
    assert {(r.source_key, r.cycle_id) for r in actions} == {("acme/api", None)}  # type: ignore[attr-defined]
    assert log_context() == {"source_key": None, "cycle_id": None}
