"""Large Salesforce reads by Bulk API 2.0 query jobs, against FakeSalesforce over loopback HTTP.

Each scenario reads one fake org twice where it can, through ``query`` (bulk off) and by query
jobs, and holds the two sinks to be the same to the byte: the CSV of a job becomes exactly the
rows the REST API gives.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

from incsync import CycleProgress, Outcome
from incsync.connectors.http import HttpOptions
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError, TransientSourceError
from incsync.records import ApplyResult, Record
from incsync.state import Checkpoint, Lease, SourceState
from incsync.testing import InMemoryStore
from incsync.testing.fakes.salesforce import FakeSalesforce, FieldValue
from incsync.vendors.salesforce import SalesforceConnector
from tests.connectors.test_salesforce import (
    CLIENT_ID,
    CLIENT_SECRET,
    FAST,
    KEY,
    T0,
    assert_sink_matches,
    connect,
    engine_for,
    make_fake,
    spread,
)

UGLY_TEXT = [
    "a,b",
    'say "hi"',
    "line one\nline two",
    "crlf\r\nend",
    "  padded  ",
    "null",
    "#N/A",
    "true",
    "",
    "\ttab",
    'a""b',
    '"',
    ",",
    "\n",
    "ünïcödé ✓ 🚀",
    None,
]
UGLY_DOUBLES = [0.1 + 0.2, 1e21, -0.0, 123456789.125, 5, 1e-7, None]
UGLY_INTS = [0, -42, 2**53, None]


def ugly_org() -> tuple[FakeSalesforce, list[str]]:
    """An org whose Ugly__c rows hold every awkward value, some of them crowded on one second."""
    fake = make_fake()
    fake.define_sobject(
        "Ugly__c",
        {
            "Text__c": "string",
            "Amount__c": "double",
            "Count__c": "int",
            "Flag__c": "boolean",
            "Due__c": "date",
            "Seen__c": "datetime",
            "Owner__c": "reference",
        },
    )
    rows: list[dict[str, FieldValue]] = [
        {
            "Text__c": UGLY_TEXT[n % len(UGLY_TEXT)],
            "Amount__c": UGLY_DOUBLES[n % len(UGLY_DOUBLES)],
            "Count__c": UGLY_INTS[n % len(UGLY_INTS)],
            "Flag__c": n % 3 == 0,
            "Due__c": [date(1, 1, 1), date(9999, 12, 31), None][n % 3],
            "Seen__c": None if n % 4 == 0 else T0 - timedelta(days=n, seconds=n),
            "Owner__c": None if n % 2 else "0055e0000000001AAA",
            # 60 rows share one second: a tick wider than the job window below.
            "SystemModstamp": T0 - timedelta(days=3) + timedelta(seconds=max(0, n - 60)),
        }
        for n in range(240)
    ]
    ids = fake.bulk_load("Ugly__c", rows)
    for record_id in ids[::17]:
        fake.delete_record("Ugly__c", record_id, at=T0 - timedelta(hours=2))
    fake.advance(timedelta(hours=1))
    return fake, ids


UGLY_FIELDS = ["Text__c", "Amount__c", "Count__c", "Flag__c", "Due__c", "Seen__c", "Owner__c"]


def sink_text(store: InMemoryStore) -> list[tuple[str, str, bool, str]]:
    """Every transaction as (id, time, deleted, payload as JSON text in its own key order)."""
    return sorted(
        (
            t.record.id,
            t.record.updated_at.isoformat(),
            t.record.deleted,
            json.dumps(t.record.payload, ensure_ascii=False),
        )
        for t in store.transactions(KEY)
    )


def bulk_connect(fake: FakeSalesforce, base_url: str, **options: Any) -> SalesforceConnector:
    """A connector that exports reads of 100 rows or more (pages of 200, so 600 rows page)."""
    return connect(fake, base_url, **{"bulk_threshold": 100, "batch_size": 200, **options})


def job_requests(fake: FakeSalesforce) -> list[str]:
    return [f"{r.method} {r.url}" for r in fake.requests if "/jobs/query" in r.url]


def full_read(fake: FakeSalesforce, **options: Any) -> InMemoryStore:
    store = InMemoryStore()
    with fake.serve() as base_url, connect(fake, base_url, **options) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    return store


# -- the same records either way ------------------------------------------------------------------


@pytest.mark.parametrize("include_deleted", [True, False])
def test_bulk_and_rest_reads_of_one_org_leave_the_same_sink(include_deleted: bool) -> None:
    """Commas, quotes, newlines, blanks, nulls, numbers, booleans, dates and tombstones survive
    CSV exactly: the bulk read's sink equals the REST read's, payload text and key order too."""
    fake, _ = ugly_org()
    options: dict[str, Any] = {
        "sobject": "Ugly__c",
        "fields": UGLY_FIELDS,
        "include_deleted": include_deleted,
        "batch_size": 200,
    }
    by_rest = full_read(fake, bulk_threshold=None, **options)
    assert job_requests(fake) == []
    by_bulk = full_read(fake, bulk_threshold=1, bulk_window=50, **options)
    assert any(r.startswith("POST") for r in job_requests(fake))
    assert sink_text(by_bulk) == sink_text(by_rest)
    assert len(sink_text(by_bulk)) == (240 if include_deleted else 240 - len(range(0, 240, 17)))
    payloads = [json.loads(text) for *_, text in sink_text(by_bulk)]
    assert {p["Text__c"] for p in payloads} >= {'say "hi"', "crlf\r\nend", "  padded  ", "null"}
    assert None in {p["Text__c"] for p in payloads}  # a blank is null, as REST gives it
    assert {type(p["Amount__c"]) for p in payloads} == {float, type(None)}
    assert {type(p["Flag__c"]) for p in payloads} == {bool}


def test_a_full_read_of_25000_records_goes_by_query_jobs_in_time_order() -> None:
    """25,000 rows, 5,000 on one second: one job with results paged by locator (10,000 a page),
    the first answer of query the only one asked, the job deleted once read."""
    fake = make_fake()
    tied = T0 - timedelta(days=2)
    rows = spread(5_000, tied, per_second=5_000) + spread(20_000, tied + timedelta(seconds=1))
    fake.bulk_load("Opportunity", rows)
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    with fake.serve() as base_url, connect(fake, base_url) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
        assert result.outcome is Outcome.COMPLETED, result.error
        assert result.applied == 25_000
        assert_sink_matches(store, fake, connector)
    results = [r for r in job_requests(fake) if "/results" in r]
    assert len(results) == 3
    assert "locator=" not in results[0]
    assert "locator=" in results[2]
    assert fake.bulk_jobs == {}
    queries = [r.url for r in fake.requests if "/query?" in r.url and "COUNT%28" not in r.url]
    assert len(queries) == 1


def test_pages_of_a_bulk_read_never_go_back_in_time() -> None:
    """Jobs answer in no order; the pages come ascending by (SystemModstamp, Id), each page's
    first record at or after the last one's of the page before, across spans and ticks."""
    fake = make_fake()
    day = T0 - timedelta(days=1)
    rows = spread(900, day, per_second=3) + spread(700, day + timedelta(hours=1), per_second=700)
    fake.bulk_load("Opportunity", rows)
    fake.advance(timedelta(hours=1))
    keys: list[tuple[datetime, str]] = []
    with fake.serve() as base_url, bulk_connect(fake, base_url, bulk_window=250) as connector:
        for page in connector.read(Window()):
            keys.extend((record.updated_at, record.id) for record in page.records)
    assert len(keys) == 1_600
    assert len(set(keys)) == 1_600
    tick = day + timedelta(hours=1)
    assert [at for at, _ in keys] == sorted(at for at, _ in keys)
    assert [k for k in keys if k[0] != tick] == sorted(k for k in keys if k[0] != tick)


def test_incremental_cycles_stay_on_query() -> None:
    """After a bulk first sync, a cycle of a few changes reads them through query, no job."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(900, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    with fake.serve() as base_url, connect(fake, base_url, bulk_threshold=500) as connector:
        engine = engine_for(fake, store)
        assert engine.run_cycle(KEY, connector).applied == 900
        jobs = len(job_requests(fake))
        for record_id in ids[:5]:
            fake.update_record("Opportunity", record_id, {"StageName": "Closed Won"})
        fake.advance(timedelta(minutes=10))
        assert engine.run_cycle(KEY, connector).applied == 5
        assert len(job_requests(fake)) == jobs
        assert_sink_matches(store, fake, connector)


def test_changes_while_the_jobs_run_are_read_at_their_new_version() -> None:
    """Rows updated while spans are exported move to now: read then, or by the next cycle."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(1_200, T0 - timedelta(days=1), per_second=3))
    fake.advance(timedelta(hours=1))
    changed = iter(ids[::97])

    def change_one(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST" and (record_id := next(changed, None)) is not None:
            fake.update_record("Opportunity", record_id, {"Name": "changed meanwhile"})
        return None

    fake.add_fault(change_one)
    store = InMemoryStore()
    with fake.serve() as base_url, bulk_connect(fake, base_url, bulk_window=300) as connector:
        engine = engine_for(fake, store)
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        fake.clear_faults()
        fake.advance(timedelta(minutes=10))
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        assert_sink_matches(store, fake, connector)


# -- crashes, failures, stops ---------------------------------------------------------------------


class SimulatedCrash(BaseException):
    """The process dies right after a page is durable."""


class CrashingStore(InMemoryStore):
    """Dies after its ``crash_after``-th durable page; counts every version written."""

    def __init__(self, crash_after: int | None) -> None:
        super().__init__()
        self.crash_after = crash_after
        self.commits = 0
        self.written = 0

    def commit_page(
        self,
        source_key: str,
        records: Sequence[Record],
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> tuple[ApplyResult, SourceState]:
        done = super().commit_page(source_key, records, lease, generation, checkpoint, now, ttl)
        self.commits += 1
        self.written += done[0].applied
        if self.commits == self.crash_after:
            self.crash_after = None
            raise SimulatedCrash
        return done


@pytest.mark.parametrize("crash_after", range(1, 11))
def test_a_crash_mid_bulk_read_resumes_without_loss_or_a_second_write(crash_after: int) -> None:
    """The process dies after any durable page of the read's 11 (a waiting one, one inside a
    sorted span or a crowded tick); a new process resumes from the cursor and every version is
    written once."""
    fake = make_fake()
    day = T0 - timedelta(days=1)
    rows = spread(900, day, per_second=3) + spread(700, day + timedelta(hours=1), per_second=700)
    fake.bulk_load("Opportunity", rows)
    fake.advance(timedelta(hours=1))
    store = CrashingStore(crash_after)
    with fake.serve() as base_url:
        with (
            bulk_connect(fake, base_url, bulk_window=500) as connector,
            pytest.raises(SimulatedCrash),
        ):
            engine_for(fake, store).run_cycle(KEY, connector)
        cursor = store.load(KEY).cursor
        fake.advance(timedelta(minutes=11))  # the dead worker's lease runs out
        with bulk_connect(fake, base_url, bulk_window=500) as connector:
            result = engine_for(fake, store).run_cycle(KEY, connector)
            assert result.outcome is Outcome.COMPLETED, result.error
            assert_sink_matches(store, fake, connector)
    assert store.written == 1_600  # each version once; what came again was already there
    resumed = store.load(KEY).cursor
    assert resumed is not None
    assert cursor is None or resumed >= cursor


def test_a_failed_job_fails_the_cycle_and_moves_no_cursor() -> None:
    """A job that ends Failed fails the cycle with Salesforce's message; the cursor stays where
    the spans before it left it; the next cycle completes the read."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1), per_second=2))
    fake.advance(timedelta(hours=1))
    fake.fail_bulk_jobs(1, message="Retried more than 15 times.")
    store = InMemoryStore()
    with fake.serve() as base_url, bulk_connect(fake, base_url) as connector:
        engine = engine_for(fake, store)
        failed = engine.run_cycle(KEY, connector)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "TransientSourceError"
        assert "ended Failed: Retried more than 15 times." in (failed.error or "")
        assert store.load(KEY).cursor is None
        assert store.count_transactions(KEY) == 0
        assert list(fake.bulk_jobs.values()) == ["Failed"]  # kept for the org's admins
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        assert_sink_matches(store, fake, connector)


def test_a_job_aborted_in_the_org_fails_the_cycle_after_the_spans_already_applied() -> None:
    """The second span's job is aborted by an admin: the first span stays applied, the cursor
    at its end, and the cycle fails saying so."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1), per_second=2))
    fake.advance(timedelta(hours=1))

    def abort_second(request: httpx.Request) -> httpx.Response | None:
        if request.method == "GET" and JOB.search(request.url.path) is not None:
            # The second span's job was created with the first: an admin aborts it meanwhile.
            jobs = list(fake.bulk_jobs)
            if len(jobs) >= 2:
                fake.abort_bulk_jobs(jobs[1])
        return None

    fake.add_fault(abort_second)
    store = InMemoryStore()
    with fake.serve() as base_url, bulk_connect(fake, base_url, bulk_window=350) as connector:
        failed = engine_for(fake, store).run_cycle(KEY, connector)
    assert failed.outcome is Outcome.FAILED
    assert "ended Aborted" in (failed.error or "")
    applied = store.count_transactions(KEY)
    cursor = store.load(KEY).cursor
    assert 0 < applied < 600
    assert cursor is not None
    newest = max(t.record.updated_at for t in store.transactions(KEY))
    assert cursor.updated_at == newest


@pytest.mark.parametrize(("window", "jobs"), [(50_000, 1), (250, 3)])
def test_a_stop_while_a_job_runs_ends_the_cycle_and_aborts_the_jobs(window: int, jobs: int) -> None:
    """Every look at a running job is a durable (empty) page: a stop set then ends the cycle
    there, the job and those created ahead of it are aborted, the cursor has not moved, and the
    next cycle reads everything."""
    fake = make_fake(bulk_job_delay=timedelta(seconds=30))
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    stop = threading.Event()
    store = InMemoryStore()
    with fake.serve() as base_url, bulk_connect(fake, base_url, bulk_window=window) as connector:
        engine = engine_for(fake, store)
        stopped = engine.run_cycle(KEY, connector, stop=stop, on_progress=lambda _: stop.set())
        assert stopped.outcome is Outcome.INTERRUPTED_STOP
        assert (stopped.pages, stopped.fetched) == (1, 0)
        assert list(fake.bulk_jobs.values()) == ["Aborted"] * jobs
        assert store.load(KEY).cursor is None
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        assert_sink_matches(store, fake, connector)


def test_a_cancel_while_a_job_runs_ends_the_cycle_at_the_next_look() -> None:
    """A cancel from another worker is seen at the next look at the job (a durable page)."""
    fake = make_fake(bulk_job_delay=timedelta(seconds=30))
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    with fake.serve() as base_url, bulk_connect(fake, base_url) as connector:
        engine = engine_for(fake, store)

        def cancel(_: CycleProgress) -> None:
            engine.cancel(KEY)

        result = engine.run_cycle(KEY, connector, on_progress=cancel)
    assert result.outcome is Outcome.INTERRUPTED_CANCEL
    assert list(fake.bulk_jobs.values()) == ["Aborted"]


def test_the_wait_for_a_job_backs_off_and_gives_up_after_an_hour() -> None:
    """Looks at a job come at once, then after 1, 2, 3... then every 10 s of sleep, never in a
    busy loop; a job still running after an hour is aborted and fails the cycle."""
    fake = make_fake(bulk_job_delay=timedelta(hours=3))
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        fake.advance(timedelta(seconds=seconds))

    with fake.serve() as base_url:
        connector = SalesforceConnector(
            CLIENT_ID,
            CLIENT_SECRET,
            fake.refresh_token,
            login_url=base_url,
            bulk_threshold=100,
            batch_size=200,
            options=HttpOptions(retry=FAST, sleep=sleep, clock=fake.clock),
        )
        with connector, pytest.raises(TransientSourceError, match="within 1:00:00"):
            list(connector.read(Window()))
    assert slept[:12] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 10.0, 10.0]
    assert sum(slept) >= 3_600
    assert len(job_looks(fake)) == len(slept) + 1  # the first look is at once
    assert list(fake.bulk_jobs.values()) == ["Aborted"]


JOB = re.compile(r"/jobs/query/(\w+)$")


def job_looks(fake: FakeSalesforce) -> list[str]:
    return [
        r.url
        for r in fake.requests
        if r.method == "GET" and "/jobs/query/" in r.url and "/results" not in r.url
    ]


# -- what the read refuses, and what stays on query -----------------------------------------------


def test_fields_a_bulk_query_cannot_read_keep_the_read_on_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A field the describe types as compound (an address) cannot be exported: the read pages
    through query, says why in the log, and creates no job."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))

    def compound(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.endswith("/describe"):
            return None
        described = fake.handle(request).json()
        for field in described["fields"]:
            if field["name"] == "Name":
                field["type"] = "address"
        return httpx.Response(200, json=described)

    fake.add_fault(compound)
    with caplog.at_level("INFO", logger="incsync"):
        store = full_read(fake, bulk_threshold=100, batch_size=200)
    assert job_requests(fake) == []
    assert store.count_transactions(KEY) == 600
    assert "a bulk query cannot read Name (address)" in caplog.text


def results_changed(
    fake: FakeSalesforce, change: Callable[[httpx.Response], httpx.Response]
) -> None:
    def fault(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.endswith("/results"):
            return None
        first = request.url.copy_remove_param("locator")  # a stuck locator: the same page
        return change(fake.handle(httpx.Request("GET", first, headers=request.headers)))

    fake.add_fault(fault)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: _with(r, headers={"Sforce-NumberOfRecords": "7"}), "Sforce-NumberOfRecords"),
        (lambda r: _with(r, content=r.content.split(b"\n", 3)[3]), "not the fields selected"),
        (lambda r: _with(r, content=r.content + b'"x"\n'), "do not match its columns"),
        (lambda r: _with(r, content=b'"Id"\n"\xff"\n'), "not UTF-8"),
        (lambda r: _with(r, headers={"Sforce-Locator": "MTAwMDA"}), "twice"),
    ],
)
def test_results_that_are_not_the_job_s_stop_the_read(
    change: Callable[[httpx.Response], httpx.Response], message: str
) -> None:
    """A cut page, a lost header, a short row, bytes that are no text, a locator that loops:
    the read stops with BadResponseError before it passes on any row of the span."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    results_changed(fake, change)
    with (
        fake.serve() as base_url,
        bulk_connect(fake, base_url) as connector,
        pytest.raises(BadResponseError, match=message),
    ):
        list(connector.read(Window()))


def _with(
    response: httpx.Response, *, headers: dict[str, str] | None = None, content: bytes | None = None
) -> httpx.Response:
    changed = httpx.Headers(response.headers)
    for name, value in (headers or {}).items():
        changed[name] = value
    return httpx.Response(
        response.status_code,
        headers=changed,
        content=response.content if content is None else content,
    )


@pytest.mark.parametrize(
    "options",
    [
        {"bulk_threshold": 0},
        {"bulk_threshold": True},
        {"bulk_window": 0},
        {"bulk_threshold": 10, "api_version": "46.0"},
    ],
)
def test_bad_bulk_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SalesforceConnector("id", "secret", "token", **options)


def test_an_old_api_version_reads_through_query_when_bulk_is_off() -> None:
    connector = SalesforceConnector(
        "id", "secret", "token", api_version="46.0", bulk_threshold=None
    )
    assert connector.bulk_threshold is None
