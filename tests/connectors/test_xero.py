"""XeroConnector against FakeXero over loopback HTTP: every scenario ends with sink == source."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incsync import SQLiteStore, SyncEngine
from incsync.connectors.auth import TokenSet
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError
from incsync.results import CycleResult, Outcome
from incsync.testing import InMemoryStore
from incsync.testing.fakes.xero import FakeXero, XeroLimits
from incsync.timestamps import parse_dotnet_date
from incsync.vendors.xero import XeroConnector, xero_auth
from tests.helpers import Store, transactions_by_id

UTC = timezone.utc
KEY = "xero-invoices"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
LATER = datetime(2024, 6, 3, 16, 0, tzinfo=UTC)  # the fake's default clock
CLIENT_SECRET = "xero-client-secret-SENTINEL-51c0de"
UNLIMITED = XeroLimits(per_minute=None, per_day=None)


def no_sleep(_seconds: float) -> None:
    """Never wait in tests."""


def sleeping_on(fake: FakeXero) -> Callable[[float], None]:
    """Return a sleep that moves the fake's clock instead of waiting, so throttles clear."""

    def sleep(seconds: float) -> None:
        fake.clock.advance(timedelta(seconds=seconds))

    return sleep


@pytest.fixture
def fake() -> FakeXero:
    """An organisation without rate limits (tests that need them set them)."""
    return FakeXero(limits=UNLIMITED, client_secret=CLIENT_SECRET)


@contextmanager
def connect(
    fake: FakeXero,
    *,
    sleep: Callable[[float], None] = no_sleep,
    retry: RetryPolicy | None = None,
    on_refresh: Callable[[TokenSet], None] | None = None,
    tenant_id: str | None = None,
    kind: type[XeroConnector] = XeroConnector,
) -> Iterator[XeroConnector]:
    """Serve the fake on loopback and yield a connector holding a fresh access token."""
    tokens = fake.grant_tokens()
    with fake.serve() as base_url:
        auth = xero_auth(
            fake.client_id,
            fake.client_secret,
            tokens.refresh_token,
            token_url=f"{base_url}/connect/token",
            access_token=tokens.access_token,
            expires_at=tokens.expires_at,
            on_refresh=on_refresh,
            clock=fake.clock,
        )
        connector = kind(
            tenant_id or fake.tenant_id,
            auth=auth,
            base_url=f"{base_url}/api.xro/2.0",
            options=HttpOptions(sleep=sleep, retry=retry or RetryPolicy(), clock=fake.clock),
        )
        with closing(connector):
            yield connector


def engine(store: Store, fake: FakeXero) -> SyncEngine:
    """An engine on the fake's clock."""
    return SyncEngine(store, clock=fake.clock)


def run(sync: SyncEngine, source: XeroConnector) -> CycleResult:
    """Run one cycle and return its result."""
    return sync.run_cycle(KEY, source)


def assert_matches(store: Store, fake: FakeXero) -> None:
    """The sink holds every invoice's latest raw object once; deleted and voided are tombstones."""
    held = transactions_by_id(store, KEY)
    truth = fake.ground_truth()
    assert held.keys() == truth.keys()
    for invoice_id, invoice in truth.items():
        record = held[invoice_id].record
        assert record.payload == invoice, invoice_id
        assert record.updated_at == parse_dotnet_date(invoice["UpdatedDateUTC"])
        assert record.deleted == (invoice["Status"] in {"DELETED", "VOIDED"}), invoice_id


def invoice_requests(fake: FakeXero) -> list[tuple[str | None, str]]:
    """The (If-Modified-Since, page) of every invoices request the fake answered."""
    found = []
    for request in fake.requests:
        url = httpx.URL(request.url)
        if url.path.endswith("/Invoices"):
            found.append((request.headers.get("if-modified-since"), url.params["page"]))
    return found


def rewriting(
    fake: FakeXero, rewrite: Callable[[list[Any]], list[Any]]
) -> Callable[[httpx.Request], httpx.Response | None]:
    """Return a fault that passes every invoices answer's rows through ``rewrite``."""

    def fault(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.endswith("/Invoices"):
            return None
        response = fake.handle(request)
        body: dict[str, Any] = json.loads(response.read())
        if "Invoices" in body:
            body["Invoices"] = rewrite(body["Invoices"])
        return httpx.Response(response.status_code, json=body, headers=response.headers)

    return fault


def assert_failed(result: CycleResult, error_class: str, says: str) -> None:
    """The cycle failed with ``error_class``, its message saying ``says``."""
    assert result.outcome is Outcome.FAILED
    assert result.error_class == error_class
    assert says in (result.error or "")


def completes_and_matches(fake: FakeXero) -> CycleResult:
    """Run one cycle into a fresh store: it completes and the sink matches the fake."""
    store = InMemoryStore()
    with connect(fake) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert_matches(store, fake)
    return result


def test_full_sync_of_25000_invoices_with_a_crowded_second(fake: FakeXero) -> None:
    """25,000 invoices, 1,050 of them in one second, are each applied exactly once.

    The query that finds the second crowded asks for page 1 only; the second is then read whole
    with page=N, each page once (and checked once); every other request is a fresh page-1 query
    from the last second read, so no page number is trusted across seconds.
    """
    fake.bulk_load(T0 + timedelta(seconds=n // 3) for n in range(12_000))
    crowd = T0 + timedelta(hours=5)
    fake.bulk_load(crowd + timedelta(milliseconds=n % 900) for n in range(1_050))
    fake.bulk_load(crowd + timedelta(seconds=1 + n // 2) for n in range(11_950))
    result = completes_and_matches(fake)
    assert (result.fetched, result.applied, result.rejected) == (25_000, 25_000, 0)
    sent = invoice_requests(fake)
    crowded = [page for since, page in sent if since == "2024-01-01T05:00:00"]
    # 1,050 rows: the query that found the second crowded, then its 11 pages, once.
    assert crowded == ["1", *(str(page) for page in range(1, 12))]
    assert ("2024-06-03T16:00:00", "1") in sent  # the check for rows moved during the pass
    assert len(sent) < 25_000 // 95 + 15


def test_incremental_cycles_with_updates_voids_deletes_and_crowded_seconds(
    fake: FakeXero, store: Store
) -> None:
    """Later cycles bring exactly the updates, voids, deletes and same-second bursts."""
    ids = fake.bulk_load(T0 + timedelta(seconds=n) for n in range(450))
    sync = engine(store, fake)
    with connect(fake) as source:
        assert run(sync, source).outcome is Outcome.COMPLETED
        assert_matches(store, fake)

        fake.clock.advance(timedelta(minutes=10))
        for invoice_id in ids[:30]:
            fake.update(invoice_id, {"AmountDue": 0.0, "Status": "PAID"})
        for invoice_id in ids[30:35]:
            fake.void(invoice_id)
        for invoice_id in ids[35:40]:
            fake.delete(invoice_id)
        burst = fake.clock()
        fake.bulk_load(burst + timedelta(milliseconds=n % 3) for n in range(250))
        fake.clock.advance(timedelta(minutes=10))
        second = run(sync, source)
        assert second.outcome is Outcome.COMPLETED, second.error
        assert second.applied == 30 + 5 + 5 + 250
        assert_matches(store, fake)

        fake.clock.advance(timedelta(minutes=10))
        for invoice_id in ids[40:45]:
            fake.update(invoice_id, {"Reference": "renamed"})
        fake.void(ids[45])
        fake.clock.advance(timedelta(minutes=10))
        third = run(sync, source)
        assert third.outcome is Outcome.COMPLETED, third.error
        assert third.applied == 6
        assert_matches(store, fake)

        fake.clock.advance(timedelta(minutes=10))
        assert run(sync, source).applied == 0


def test_changes_while_a_sync_pages_lose_nothing(fake: FakeXero) -> None:
    """Invoices updated, voided or deleted between pages (which shifts page=N) are all read."""
    ids = fake.bulk_load(T0 + timedelta(seconds=n) for n in range(1_200))
    calls = {"invoices": 0}

    def meddle(request: httpx.Request) -> None:
        if request.url.path.endswith("/Invoices"):
            calls["invoices"] += 1
            if calls["invoices"] == 3:
                for invoice_id in ids[:40]:  # read already: changed again
                    fake.update(invoice_id, {"Reference": "again"})
                for invoice_id in ids[600:640]:  # not read yet: moved to the end
                    fake.update(invoice_id, {"Reference": "moved"})
                fake.void(ids[50])
                fake.delete(ids[700])

    fake.add_fault(meddle)
    completes_and_matches(fake)


def moving_on_page_3_of(
    fake: FakeXero, second: datetime, moved: list[str]
) -> Callable[[httpx.Request], None]:
    """Return a fault that updates ``moved`` before page 3 of ``second`` is first answered.

    The rows of pages 1 and 2 were read; every later row moves up by ``len(moved)``, so as many
    rows slide onto page 2, already read.
    """
    header = second.replace(tzinfo=None).isoformat()
    done: list[bool] = []

    def meddle(request: httpx.Request) -> None:
        page = request.url.params.get("page")
        if not done and request.headers.get("if-modified-since") == header and page == "3":
            done.append(True)
            for invoice_id in moved:
                fake.update(invoice_id, {"Reference": "moved"})

    return meddle


def test_changes_inside_a_crowded_second_while_it_is_paged_are_caught(fake: FakeXero) -> None:
    """Rows of a crowded second updated mid-pass shift the pages; a second pass reads the gap.

    Without that second pass, 20 invoices slide onto a page already read and are never seen.
    """
    crowd = T0 + timedelta(hours=1)
    ids = fake.bulk_load(crowd + timedelta(milliseconds=n) for n in range(450))
    fake.bulk_load(crowd + timedelta(minutes=1, seconds=n) for n in range(50))
    fake.add_fault(moving_on_page_3_of(fake, crowd, ids[:20]))
    completes_and_matches(fake)
    crowded = [page for since, page in invoice_requests(fake) if since == "2024-01-01T01:00:00"]
    first_pass = crowded.index("5")  # 450 rows: pages 1 to 5
    assert crowded[first_pass - 4 : first_pass + 1] == ["1", "2", "3", "4", "5"]
    assert "1" in crowded[first_pass:]  # the pass saw rows move and read the second again


class TrustingConnector(XeroConnector):
    """The negative control: believes a crowded second never moves while it is paged."""

    def _moved_since(self, began: datetime, met: Mapping[str, datetime]) -> bool:
        return False


def test_without_the_check_a_crowded_second_loses_rows(fake: FakeXero) -> None:
    """The negative control of the test above: trusting page=N through the pass loses rows."""
    crowd = T0 + timedelta(hours=1)
    ids = fake.bulk_load(crowd + timedelta(milliseconds=n) for n in range(450))
    fake.add_fault(moving_on_page_3_of(fake, crowd, ids[:20]))
    with connect(fake, kind=TrustingConnector) as source:
        read = {r.id for page in source.read(Window()) for r in page.records}
    assert len(set(ids) - read) == 20


def test_a_crowded_second_that_never_settles_fails_the_cycle_then_recovers(
    fake: FakeXero,
) -> None:
    """A second whose rows move on every pass fails the cycle (transient), not loses rows."""
    crowd = T0 + timedelta(hours=1)
    ids = fake.bulk_load(crowd + timedelta(milliseconds=n) for n in range(300))
    moved = iter(ids)

    def restless(request: httpx.Request) -> None:
        page = request.url.params.get("page")
        if request.headers.get("if-modified-since") == "2024-01-01T01:00:00" and page == "2":
            fake.update(next(moved), {"Reference": "restless"})

    fake.add_fault(restless)
    store = InMemoryStore()
    sync = engine(store, fake)
    with connect(fake) as source:
        failed = run(sync, source)
        assert_failed(failed, "TransientSourceError", "kept changing")
        fake.clear_faults()
        assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


def test_minute_throttling_mid_sync_is_waited_out(fake: FakeXero) -> None:
    """429 ``minute`` mid-sync is waited out for its Retry-After; the sync completes."""
    fake.bulk_load(T0 + timedelta(seconds=n) for n in range(7_000))
    fake.limits = XeroLimits(per_minute=60, per_day=5_000)
    store = InMemoryStore()
    with connect(fake, sleep=sleeping_on(fake), retry=RetryPolicy(jitter=0.0)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert any(r.status == 429 for r in fake.requests)
    assert fake.clock() > LATER + timedelta(seconds=30)  # the waits moved the fake's clock
    assert_matches(store, fake)


def test_day_limit_fails_the_cycle_at_once_with_not_before(fake: FakeXero) -> None:
    """429 ``day`` fails the cycle without a retry and records when to try again."""
    fake.bulk_load(T0 + timedelta(seconds=n) for n in range(1_000))
    fake.limits = XeroLimits(per_minute=60, per_day=3)
    store = InMemoryStore()
    sync = engine(store, fake)
    with connect(fake) as source:
        failed = run(sync, source)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "RateLimitedError"
        assert sum(1 for r in fake.requests if r.status == 429) == 1
        state = sync.state(KEY)
        assert state.not_before is not None
        assert state.not_before >= fake.clock() + timedelta(hours=23)
        assert run(sync, source).outcome is Outcome.SKIPPED_WAITING

        fake.clock.set(state.not_before + timedelta(seconds=1))
        fake.limits = UNLIMITED
        assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


def test_token_expiry_mid_sync_refreshes_and_hands_over_the_rotated_token(
    fake: FakeXero,
) -> None:
    """An expired access token is refreshed; each rotated refresh token reaches on_refresh."""
    fake.bulk_load(T0 + timedelta(seconds=n) for n in range(1_000))
    calls = {"invoices": 0}

    def expire(request: httpx.Request) -> None:
        if request.url.path.endswith("/Invoices"):
            calls["invoices"] += 1
            if calls["invoices"] in (3, 7):
                fake.expire_access_tokens()

    fake.add_fault(expire)
    refreshed: list[TokenSet] = []
    store = InMemoryStore()
    with connect(fake, on_refresh=refreshed.append) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert len(refreshed) == 2
    assert all(tokens.rotated for tokens in refreshed)
    assert refreshed[0].refresh_token != refreshed[1].refresh_token
    token_calls = [r.status for r in fake.requests if r.url.endswith("/connect/token")]
    assert token_calls == [200, 200]  # the second refresh used the rotated token
    assert sum(1 for r in fake.requests if r.status == 401) == 2
    assert_matches(store, fake)


def test_a_subclass_rule_for_deletes_applies_to_records_built_while_paging(
    fake: FakeXero,
) -> None:
    """A subclass's is_deleted decides which records read by keyset are tombstones."""

    class DraftsAreGone(XeroConnector):
        def is_deleted(self, raw: Mapping[str, Any]) -> bool:
            return raw.get("Reference") == "draft"

    ids = fake.bulk_load(
        (T0 + timedelta(seconds=n) for n in range(150)),
        fields=lambda n: {"Reference": "draft" if n % 3 == 0 else "final"},
    )
    with connect(fake, kind=DraftsAreGone) as source:
        records = {r.id: r for page in source.read(Window()) for r in page.records}
    assert {key for key, record in records.items() if record.deleted} == set(ids[::3])


def test_a_malformed_invoice_is_set_aside_and_the_cycle_completes(fake: FakeXero) -> None:
    """An invoice with an unreadable UpdatedDateUTC is set aside once; the rest are applied."""
    ids = fake.bulk_load(T0 + timedelta(seconds=n) for n in range(700))
    broken = ids[321]

    def corrupt(rows: list[Any]) -> list[Any]:
        for invoice in rows:
            if invoice["InvoiceID"] == broken:
                invoice["UpdatedDateUTC"] = "last Tuesday"
        return rows

    fake.add_fault(rewriting(fake, corrupt))
    store = InMemoryStore()
    sync = engine(store, fake)
    with connect(fake) as source:
        result = run(sync, source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.rejected == 1
    assert [r.record_id for r in sync.rejected(KEY)] == [broken]
    held = transactions_by_id(store, KEY)
    truth = fake.ground_truth()
    assert held.keys() == truth.keys() - {broken}
    assert all(held[i].record.payload == truth[i] for i in held)


def test_a_500_storm_fails_the_cycle_keeps_the_cursor_and_the_next_recovers(
    fake: FakeXero,
) -> None:
    """500s outlast the retries: FAILED with the cursor unchanged; the next cycle heals."""
    ids = fake.bulk_load(T0 + timedelta(seconds=n) for n in range(500))
    store = InMemoryStore()
    sync = engine(store, fake)
    with connect(fake, retry=RetryPolicy(max_attempts=3)) as source:
        assert run(sync, source).outcome is Outcome.COMPLETED
        cursor = sync.state(KEY).cursor
        fake.clock.advance(timedelta(minutes=10))
        for invoice_id in ids[:20]:
            fake.update(invoice_id, {"Reference": "changed"})
        fake.clock.advance(timedelta(minutes=10))

        def storm(request: httpx.Request) -> httpx.Response | None:
            if request.url.path.endswith("/Invoices"):
                body = {"ErrorNumber": 500, "Type": "UnknownError", "Message": "An error occurred"}
                return httpx.Response(500, json=body)
            return None

        fake.add_fault(storm)
        failed = run(sync, source)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "TransientSourceError"
        assert sum(1 for r in fake.requests if r.status == 500) == 3
        assert sync.state(KEY).cursor == cursor
        fake.clear_faults()
        assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


def test_an_unknown_tenant_fails_the_cycle_as_an_auth_error(fake: FakeXero) -> None:
    """A tenant id the token may not reach is a 403: an AuthError, so the source stops sooner."""
    fake.bulk_load([T0])
    store = InMemoryStore()
    with connect(fake, tenant_id="00000000-0000-0000-0000-000000000000") as source:
        failed = run(engine(store, fake), source)
    assert_failed(failed, "AuthError", "AuthorizationUnsuccessful")


def test_secrets_never_reach_logs_errors_state_or_the_database(
    fake: FakeXero, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens and the client secret stay out of logs, error text, state and the SQLite file.

    A failing answer echoes the access token back; it is masked everywhere.
    """
    caplog.set_level(logging.DEBUG)
    fake.bulk_load(T0 + timedelta(seconds=n) for n in range(300))
    used: set[str] = set()
    refreshed: list[TokenSet] = []

    def echo(request: httpx.Request) -> httpx.Response | None:
        token = request.headers.get("authorization", "").partition(" ")[2]
        if token and request.url.path.endswith("/Invoices"):
            used.add(token)
            fake.expire_access_tokens()  # every request refreshes: many tokens in play
            return httpx.Response(500, text=f"internal error for token {token}")
        return None

    fake.add_fault(echo)
    with SQLiteStore(tmp_path / "sync.db") as store:
        sync = engine(store, fake)
        with connect(fake, retry=RetryPolicy(max_attempts=2), on_refresh=refreshed.append) as src:
            failed = run(sync, src)
            assert failed.outcome is Outcome.FAILED
            state_text = repr(sync.state(KEY)) + repr(sync.states())
            fake.clear_faults()
            assert run(sync, src).outcome is Outcome.COMPLETED
            state_text += repr(sync.state(KEY))
            assert_matches(store, fake)
    database = b"".join(path.read_bytes() for path in tmp_path.glob("sync.db*"))
    secrets = {CLIENT_SECRET, *used, *(t.refresh_token for t in refreshed)}
    secrets |= {t.access_token for t in refreshed}
    assert used
    assert refreshed
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in str(failed.error)
        assert secret not in state_text
        assert secret.encode() not in database
    assert failed.error is not None
    assert "internal error" in failed.error


def test_pages_come_in_ascending_order_with_tombstones(fake: FakeXero) -> None:
    """read() never goes back a second; deleted and voided invoices are tombstones."""
    ids = fake.bulk_load(T0 + timedelta(milliseconds=400 * n) for n in range(700))
    fake.void(ids[3])
    fake.delete(ids[4])
    with connect(fake) as source:
        records = [r for page in source.read(Window(start=T0)) for r in page.records]
    stamps = [r.updated_at for r in records]
    assert stamps == sorted(stamps)
    assert len(records) == 700
    assert {r.id for r in records if r.deleted} == {ids[3], ids[4]}


def test_a_window_start_reads_from_its_whole_second(fake: FakeXero) -> None:
    """The header has whole seconds: a window starting mid-second reads that whole second."""
    early, late = fake.bulk_load(
        [T0 + timedelta(milliseconds=100), T0 + timedelta(milliseconds=900)]
    )
    with connect(fake) as source:
        records = [
            r
            for page in source.read(Window(start=T0 + timedelta(milliseconds=500)))
            for r in page.records
        ]
    assert {r.id for r in records} == {early, late}
    assert invoice_requests(fake) == [("2024-01-01T00:00:00", "1")]


@pytest.mark.parametrize(
    ("tenant_id", "endpoint", "id_field"),
    [(" ", "Invoices", None), ("t", "Not a list", None), ("t", "Widgets", None)],
)
def test_bad_configuration_is_refused(
    fake: FakeXero, tenant_id: str, endpoint: str, id_field: str | None
) -> None:
    """An empty tenant, a malformed list name or a list without a known id field is refused."""
    auth = xero_auth(fake.client_id, fake.client_secret, "refresh")
    with pytest.raises(ConfigurationError):
        XeroConnector(tenant_id, auth=auth, endpoint=endpoint, id_field=id_field)


def test_other_lists_take_their_own_id_field() -> None:
    """Known lists need no id field; others take one."""
    auth = xero_auth("client", "secret", "refresh")
    with XeroConnector("t", auth=auth, endpoint="CreditNotes") as notes:
        assert notes.id_field == "CreditNoteID"
    with XeroConnector("t", auth=auth, endpoint="Widgets", id_field="WidgetID") as widgets:
        assert widgets.id_field == "WidgetID"


def test_a_server_ignoring_the_page_parameter_stops_the_read_instead_of_looping(
    fake: FakeXero,
) -> None:
    """If page=N always brought page 1, a crowded second would loop; the cycle fails instead."""
    fake.bulk_load(T0 + timedelta(milliseconds=n % 10) for n in range(250))

    def first_page_only(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/Invoices") and request.url.params.get("page") != "1":
            return fake.handle(
                httpx.Request(
                    "GET", request.url.copy_set_param("page", "1"), headers=request.headers
                )
            )
        return None

    fake.add_fault(first_page_only)
    with connect(fake) as source:
        failed = run(engine(InMemoryStore(), fake), source)
    assert_failed(failed, "BadResponseError", "page parameter was ignored")


def test_a_server_ignoring_if_modified_since_stops_the_read(fake: FakeXero) -> None:
    """Rows older than the second asked for fail the read rather than loop or go back."""
    fake.bulk_load(T0 + timedelta(seconds=n) for n in range(250))

    def no_filter(request: httpx.Request) -> httpx.Response | None:
        if "if-modified-since" in request.headers:
            headers = {k: v for k, v in request.headers.items() if k != "if-modified-since"}
            return fake.handle(httpx.Request("GET", request.url, headers=headers))
        return None

    fake.add_fault(no_filter)
    with connect(fake) as source, pytest.raises(BadResponseError, match="order asked for"):
        list(source.read(Window(start=T0 + timedelta(seconds=120))))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, list[int], int]]]:
    """Invoice stamps (ms after T0, crowded into a few seconds) and changes made mid-read.

    Each change is (the request it comes before, the indexes of the invoices it updates, how many
    ms the clock moves first); at most two, so a crowded second settles within three passes.
    """
    stamps = draw(st.lists(st.integers(0, 2_999), min_size=120, max_size=450))
    changes = draw(
        st.lists(
            st.tuples(
                st.integers(2, 6),
                st.lists(st.integers(0, 449), max_size=150),
                st.integers(0, 1_500),
            ),
            max_size=2,
        )
    )
    return stamps, changes


@settings(max_examples=15)
@given(history=histories())
def test_every_invoice_is_read_at_its_final_stamp_whatever_changes_mid_read(
    history: tuple[list[int], list[tuple[int, list[int], int]]],
) -> None:
    """Property: with crowded seconds and updates between any requests, a read ends having
    returned every invoice in its final version, and never goes back a second."""
    stamps, changes = history
    fake = FakeXero(limits=UNLIMITED)
    ids = fake.bulk_load(T0 + timedelta(milliseconds=ms) for ms in stamps)
    due = {before: (chosen, step) for before, chosen, step in changes}
    calls = {"invoices": 0}

    def meddle(request: httpx.Request) -> None:
        if request.url.path.endswith("/Invoices"):
            calls["invoices"] += 1
            chosen, step = due.pop(calls["invoices"], ([], 0))
            fake.clock.advance(timedelta(milliseconds=step))
            for index in chosen:
                if index < len(ids):
                    fake.update(ids[index], {"Reference": f"change {calls['invoices']}"})

    fake.add_fault(meddle)
    with connect(fake) as source:
        records = [r for page in source.read(Window()) for r in page.records]
    got = {(r.id, r.updated_at) for r in records}
    truth = fake.ground_truth()
    assert {(i, parse_dotnet_date(row["UpdatedDateUTC"])) for i, row in truth.items()} <= got
    seconds = [r.updated_at.replace(microsecond=0) for r in records]
    assert seconds == sorted(seconds)


def test_dates_without_an_offset_or_with_escaped_slashes_are_read(fake: FakeXero) -> None:
    """Other spellings of a .NET date (no offset, escaped slashes) are read, not set aside."""
    ids = fake.bulk_load(T0 + timedelta(seconds=n) for n in range(150))
    spelled = {ids[3]: "/Date({ms})/", ids[120]: "\\/Date({ms}+0000)\\/"}

    def respell(rows: list[Any]) -> list[Any]:
        for invoice in rows:
            if invoice["InvoiceID"] in spelled:
                ms = invoice["UpdatedDateUTC"][6:-7]
                invoice["UpdatedDateUTC"] = spelled[invoice["InvoiceID"]].format(ms=ms)
        return rows

    fake.add_fault(rewriting(fake, respell))
    with connect(fake) as source:
        records = {r.id: r for page in source.read(Window()) for r in page.records}
    assert records.keys() == set(ids)
    truth = fake.ground_truth()
    for invoice_id in spelled:
        assert records[invoice_id].updated_at == parse_dotnet_date(
            truth[invoice_id]["UpdatedDateUTC"]
        )


def test_hostile_rows_are_set_aside_one_by_one_and_the_cycle_completes(
    fake: FakeXero, store: Store
) -> None:
    """Rows no record can be made of (out-of-range or malformed dates, bad ids, non-objects),
    in a plain page and in a crowded second, are each set aside once with a reason; the good
    rows around them, extreme offsets included, are all applied and the cycle completes."""
    ids = fake.bulk_load(T0 + timedelta(seconds=n) for n in range(300))
    crowd = fake.bulk_load(T0 + timedelta(hours=1, milliseconds=n % 7) for n in range(150))
    # UpdatedDateUTC spellings that name no instant datetime can hold, or no .NET date at all.
    bad_times = {
        ids[10]: "/Date(253402326000000-0800)/",  # 9999-12-31T23:00:00-08:00: past year 9999
        ids[20]: "9999-12-31T23:00:00-08:00",
        ids[30]: "/Date(-62135614800000+0500)/",  # 0001-01-01T00:00:00+05:00: before year 1
        ids[40]: "0001-01-01T00:00:00+05:00",
        ids[50]: "2024-01-01T00:00:50Z",  # ISO text, not the .NET date Xero writes
        ids[60]: "2024-01-01T00:01:00z",
        ids[70]: "/Date(soon)/",
        crowd[5]: "/Date(253402326000000-0800)/",
    }
    bad_ids: dict[str, object] = {ids[80]: True, ids[90]: 10**30, ids[100]: ""}
    not_objects: dict[str, object] = {ids[110]: ["not", "an", "object"], ids[120]: None}
    not_objects[crowd[60]] = "INV-00042"
    # Good spellings of the same instant: the .NET offset only records the writer's zone.
    offsets = {ids[11]: "+1400", ids[12]: "-1400", ids[13]: "", crowd[7]: "+1400"}

    def hostile(rows: list[Any]) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            invoice_id = row["InvoiceID"]
            if invoice_id in not_objects:
                out.append(not_objects[invoice_id])
                continue
            if invoice_id in bad_times:
                row["UpdatedDateUTC"] = bad_times[invoice_id]
            if invoice_id in bad_ids:
                row["InvoiceID"] = bad_ids[invoice_id]
            if invoice_id in offsets:
                ms = row["UpdatedDateUTC"][6:-7]
                row["UpdatedDateUTC"] = f"/Date({ms}{offsets[invoice_id]})/"
            out.append(row)
        return out

    fake.add_fault(rewriting(fake, hostile))
    sync = engine(store, fake)
    with connect(fake) as source:
        result = run(sync, source)
    assert result.outcome is Outcome.COMPLETED, result.error
    hostile_ids = bad_times.keys() | bad_ids.keys() | not_objects.keys()
    assert result.rejected == len(hostile_ids) == 14
    assert result.applied == 450 - 14
    rejected = sync.rejected(KEY)
    assert len(rejected) == 14
    assert all(item.reason for item in rejected)
    assert {item.record_id for item in rejected} == set(bad_times) | {None}
    held = transactions_by_id(store, KEY)
    truth = fake.ground_truth()
    assert held.keys() == truth.keys() - hostile_ids
    for invoice_id, transaction in held.items():
        stamp = parse_dotnet_date(truth[invoice_id]["UpdatedDateUTC"])
        assert transaction.record.updated_at == stamp, invoice_id
        assert transaction.record.payload["Reference"] == truth[invoice_id]["Reference"]


def test_an_answer_out_of_the_order_asked_for_fails_the_cycle_and_keeps_unread_rows_ahead(
    fake: FakeXero,
) -> None:
    """Answers sorted by InvoiceID (a proxy, a changed API) fail the cycle loudly; no row is
    dropped: the cursor never passes a row not applied, and the next good cycle reads them."""
    fake.bulk_load(T0 + timedelta(seconds=n) for n in range(1_000))
    calls = {"invoices": 0}

    def by_id(rows: list[Any]) -> list[Any]:
        calls["invoices"] += 1
        if calls["invoices"] < 4:  # three good pages first
            return rows
        return sorted(rows, key=lambda row: row["InvoiceID"])

    fake.add_fault(rewriting(fake, by_id))
    store = InMemoryStore()
    sync = engine(store, fake)
    with connect(fake) as source:
        failed = run(sync, source)
        assert_failed(failed, "BadResponseError", "order asked for")
        cursor = sync.state(KEY).cursor
        assert cursor is not None  # the good pages were applied
        held = transactions_by_id(store, KEY)
        unread = {
            invoice_id: parse_dotnet_date(invoice["UpdatedDateUTC"])
            for invoice_id, invoice in fake.ground_truth().items()
            if invoice_id not in held
        }
        assert unread
        assert min(unread.values()) >= cursor.updated_at
        fake.clear_faults()
        assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


@pytest.mark.parametrize("crowd", [100, 200, 301])
@pytest.mark.parametrize("after", [0, 3])
def test_a_crowded_second_of_any_size_is_read_whole(fake: FakeXero, crowd: int, after: int) -> None:
    """A second holding a page or more of invoices, all in one millisecond (ties in any order),
    is read whole, each invoice once, whether rows follow it or it ends the data."""
    fake.bulk_load(T0 + timedelta(seconds=n) for n in range(150))
    second = T0 + timedelta(hours=1)
    fake.bulk_load(second + timedelta(milliseconds=500) for _ in range(crowd))
    fake.bulk_load(second + timedelta(seconds=1 + n) for n in range(after))
    result = completes_and_matches(fake)
    assert result.fetched == result.applied == 150 + crowd + after
    crowded = [page for since, page in invoice_requests(fake) if since == "2024-01-01T01:00:00"]
    assert crowded == ["1", *(str(page) for page in range(1, crowd // 100 + 2))]


def test_rows_moving_forward_on_every_request_of_a_read_are_all_read_in_their_last_version(
    fake: FakeXero,
) -> None:
    """Before each of the first requests, rows already read, the row about where the next
    query starts and rows not read yet are updated (moved to the end, so every later row moves
    up); one cycle reads every invoice in its last version."""
    ids = fake.bulk_load(T0 + timedelta(milliseconds=300 * n) for n in range(900))
    chooser = random.Random(12)
    calls = {"invoices": 0}

    def meddle(request: httpx.Request) -> None:
        if not request.url.path.endswith("/Invoices"):
            return
        calls["invoices"] += 1
        if calls["invoices"] > 8:
            return
        fake.clock.advance(timedelta(milliseconds=7))
        reached = min(len(ids) - 1, 97 * calls["invoices"])
        chosen = chooser.sample(ids[:reached], 3) + chooser.sample(ids[reached:], 3)
        for invoice_id in [*chosen, ids[reached]]:
            fake.update(invoice_id, {"Reference": f"moved before request {calls['invoices']}"})

    fake.add_fault(meddle)
    completes_and_matches(fake)
