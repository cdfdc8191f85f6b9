"""StripeConnector against FakeStripe: every scenario ends with the sink equal to the source."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack, closing
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incsync import SQLiteStore, SyncEngine, status_of
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.cursor import Window
from incsync.errors import ConfigurationError
from incsync.records import SWEPT
from incsync.results import CycleResult, Outcome
from incsync.state import Phase
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes.stripe import FakeStripe
from incsync.timestamps import UTC
from incsync.vendors.stripe import StripeConnector
from tests.helpers import Store, transactions_by_id

KEY = "stripe-invoices"
T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)


def no_sleep(_seconds: float) -> None:
    """Never wait in tests."""


@pytest.fixture
def fake() -> FakeStripe:
    """A fake account at ``T0``."""
    return FakeStripe(clock=ManualClock(T0))


def connector(
    fake: FakeStripe,
    base_url: str,
    *,
    key: str | None = None,
    resource: str = "invoices",
    sleep: Callable[[float], None] = no_sleep,
    retry: RetryPolicy | None = None,
) -> StripeConnector:
    """A connector reaching the fake over loopback HTTP, on the fake's clock."""
    return StripeConnector(
        base_url,
        secret_key=key or fake.secret_key,
        resource=resource,
        options=HttpOptions(sleep=sleep, clock=fake.clock, retry=retry or RetryPolicy()),
    )


def engine(store: Store, fake: FakeStripe) -> SyncEngine:
    """An engine on the fake's clock."""
    return SyncEngine(store, clock=fake.clock)


def run(sync: SyncEngine, source: StripeConnector) -> CycleResult:
    """Run one cycle, then move the clock on past the safety lag."""
    result = sync.run_cycle(KEY, source)
    source.close()
    return result


def assert_matches(store: Store, fake: FakeStripe, resource: str = "invoices") -> None:
    """The sink holds every object's latest state once; voided ones as tombstones, deleted ones
    as tombstones or not at all.

    An object deleted before the first full read is neither listed nor in the events read after
    the list began, so the sink never held it and needs no tombstone; one the sink held cannot
    stay live (the ``live`` check), so its delete was read.
    """
    held = transactions_by_id(store, KEY)
    truth = fake.ground_truth(resource)
    voided = {object_id for object_id, body in truth.items() if body.get("status") == "void"}
    live = {key: t.record.payload for key, t in held.items() if not t.record.deleted}
    assert live.keys() == truth.keys() - voided
    for object_id, payload in live.items():
        assert payload == truth[object_id], object_id
    tombstones = {key for key, t in held.items() if t.record.deleted}
    assert voided <= tombstones <= voided | fake.deleted(resource)
    for object_id in voided:
        assert held[object_id].record.payload == truth[object_id]


def load(fake: FakeStripe, count: int, *, per_second: int = 1) -> list[str]:
    """Load ``count`` invoices made 40 to 60 days ago, ``per_second`` of them per second."""
    start = T0 - timedelta(days=60)
    return fake.load("invoices", [start + timedelta(seconds=i // per_second) for i in range(count)])


def later(fake: FakeStripe, minutes: int = 10) -> None:
    """Move the fake's clock on."""
    fake.clock.advance(timedelta(minutes=minutes))


def test_full_sync_of_25000_invoices(fake: FakeStripe) -> None:
    """A full sync of 25,000 invoices, three a second, pages the list by 100; each read once.

    The list is read as eight created ranges at once: each range may end on a page that is not
    full, and 13 probes of one object each planned the ranges.
    """
    load(fake, 25_000, per_second=3)
    store = InMemoryStore()
    with fake.serve() as base_url:
        result = run(engine(store, fake), connector(fake, base_url))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.fetched, result.applied, result.rejected) == (25_000, 25_000, 0)
    lists = [r for r in fake.requests if "/v1/invoices" in r.url]
    pages = [r for r in lists if "limit=100" in r.url]
    assert 250 <= len(pages) <= 250 + 8
    assert len([r for r in lists if "limit=1&" in r.url]) == len(lists) - len(pages) == 13
    assert all(r.status == 200 for r in fake.requests)
    assert_matches(store, fake)
    stamp = T0 - timedelta(minutes=5)  # the read began at T0; stamped clock_skew before it
    assert {t.record.updated_at for t in store.transactions(KEY)} == {stamp}


def test_incremental_cycles_with_updates_voids_deletes_and_same_second_bursts(
    fake: FakeStripe, store: Store
) -> None:
    """Later cycles read events only, apply each object's latest state once, and lose nothing.

    A same-second burst of 250 new invoices spans three event pages; an invoice paid (three events
    in one second) is applied once, in its paid state.
    """
    ids = load(fake, 450)
    with fake.serve() as base_url:
        sync = engine(store, fake)
        assert run(sync, connector(fake, base_url)).outcome is Outcome.COMPLETED
        assert_matches(store, fake)

        later(fake)
        for object_id in ids[:30]:
            fake.update_invoice(object_id, description="changed")
        fake.pay_invoice(ids[30])
        for object_id in ids[31:36]:
            fake.void_invoice(object_id)
        burst = [fake.create_invoice(amount_due=n) for n in range(250)]
        for object_id in burst[:4]:
            fake.delete_invoice(object_id)
        later(fake)
        second = run(sync, connector(fake, base_url))
        assert second.outcome is Outcome.COMPLETED, second.error
        assert (second.fetched, second.applied) == (30 + 1 + 5 + 250, 30 + 1 + 5 + 250)
        assert_matches(store, fake)
        paid = transactions_by_id(store, KEY)[ids[30]].record
        assert paid.payload["status"] == "paid"
        assert paid.updated_at == T0 + timedelta(minutes=10)

        later(fake)
        fake.update_invoice(ids[100], description="once more")
        fake.void_invoice(burst[10])
        later(fake)
        third = run(sync, connector(fake, base_url))
        assert third.outcome is Outcome.COMPLETED, third.error
        assert third.applied == 2
        assert_matches(store, fake)
        assert run(sync, connector(fake, base_url)).applied == 0


def test_changes_while_the_list_pages_are_caught_up_in_the_same_cycle(fake: FakeStripe) -> None:
    """Invoices created, updated, voided or deleted between list pages are all in the sink.

    The invoice the next page starts after is deleted meanwhile (Stripe answers 400
    ``resource_missing``): the list resumes from its second and loses or repeats nothing.
    """
    ids = load(fake, 350, per_second=2)
    newest_first = sorted(range(350), key=lambda i: (-(i // 2), -i))
    cursor_invoice = ids[newest_first[99]]  # the last of the first page: the next starts after it
    list_pages = [0]

    def meddle(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/invoices":
            list_pages[0] += 1
            if list_pages[0] == 2:
                fake.clock.advance(timedelta(seconds=3))
                fake.create_invoice(amount_due=1)
                fake.update_invoice(ids[newest_first[5]], description="already read")
                fake.update_invoice(ids[newest_first[300]], description="not read yet")
                fake.void_invoice(ids[newest_first[6]])
                fake.delete_invoice(cursor_invoice)
        return None

    fake.add_fault(meddle)
    store = InMemoryStore()
    with fake.serve() as base_url:
        result = run(engine(store, fake), connector(fake, base_url))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.rejected == 0
    assert any(r.status == 400 for r in fake.requests)  # the vanished starting_after object
    assert_matches(store, fake)


def test_an_update_seen_only_in_events_is_applied(fake: FakeStripe) -> None:
    """An old invoice changed after the full sync keeps its place in the list; events bring it."""
    ids = load(fake, 120)
    store = InMemoryStore()
    with fake.serve() as base_url:
        sync = engine(store, fake)
        run(sync, connector(fake, base_url))
        later(fake)
        fake.update_invoice(ids[0], metadata={"order": "42"})
        later(fake)
        result = run(sync, connector(fake, base_url))
    assert result.applied == 1
    record = transactions_by_id(store, KEY)[ids[0]].record
    assert record.payload["metadata"] == {"order": "42"}
    assert record.updated_at == T0 + timedelta(minutes=10)
    assert_matches(store, fake)


def test_a_31_day_gap_resets_the_source_visibly_and_re_reads_everything(
    fake: FakeStripe, tmp_path: Path
) -> None:
    """Past the 30 days of events the source is reset, says why, and the next cycle re-reads.

    A draft deleted early in the gap has no event left and is no longer listed: the re-read does
    not see it, so its sweep makes it a tombstone saying so.
    """
    ids = load(fake, 150)
    draft = fake.create_invoice()
    with fake.serve() as base_url, SQLiteStore(tmp_path / "sync.db") as store:
        sync = engine(store, fake)
        later(fake)
        assert run(sync, connector(fake, base_url)).outcome is Outcome.COMPLETED
        fake.clock.advance(timedelta(hours=1))
        fake.delete_invoice(draft)
        fake.clock.advance(timedelta(days=31))
        fake.update_invoice(ids[3], description="late")
        fake.void_invoice(ids[4])
        later(fake)
        before = len(fake.requests)
        gap = run(sync, connector(fake, base_url))
        assert len(fake.requests) == before  # nothing read: the events would be incomplete
        assert gap.outcome is Outcome.INTERRUPTED_RESET
        state = sync.state(KEY)
        assert (state.phase, state.reset_pending, state.generation) == (Phase.RESETTING, True, 1)
        assert state.last_error is not None
        # The engine finds the gap from the connector's delete_retention before any request.
        assert "keeps deletes for 30 days" in state.last_error.message
        assert state.consecutive_failures == 0
        assert status_of(state, now=fake.clock()).label.startswith("Resetting")

        full = run(sync, connector(fake, base_url))
        assert full.outcome is Outcome.COMPLETED, full.error
        assert full.applied == 150
        assert sync.state(KEY).phase is Phase.ACTIVE
        assert sync.state(KEY).last_error is None
        assert full.swept == 1
        held = transactions_by_id(store, KEY)
        assert {key for key, t in held.items() if t.generation < 1} == set()
        assert (held[draft].record.deleted, held[draft].deleted_reason) == (True, SWEPT)
        del held[draft]
        assert {k: t.record.payload for k, t in held.items() if not t.record.deleted} == {
            k: v for k, v in fake.ground_truth("invoices").items() if v["status"] != "void"
        }
        assert {k for k, t in held.items() if t.record.deleted} == {ids[4]}


def test_throttling_mid_sync_is_waited_out(fake: FakeStripe) -> None:
    """429s with ``Retry-After`` on the third page are waited out as asked; nothing is lost.

    The readers of the other ranges wait for the same time (besides the pace, well under 7 s).
    """
    load(fake, 500)
    waits: list[float] = []
    pages = [0]

    def throttle_third_page(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/invoices" and request.url.params["limit"] == "100":
            pages[0] += 1
            if pages[0] in (3, 4):
                body = {"error": {"type": "invalid_request_error", "code": "rate_limit"}}
                return httpx.Response(429, json=body, headers={"Retry-After": "7"})
        return None

    fake.add_fault(throttle_third_page)
    store = InMemoryStore()
    with fake.serve() as base_url:
        result = run(engine(store, fake), connector(fake, base_url, sleep=waits.append))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert [r.status for r in fake.requests].count(429) == 2
    assert len([wait for wait in waits if wait >= 7]) >= 2
    assert_matches(store, fake)


def test_stripe_should_retry_overrules_the_status(fake: FakeStripe) -> None:
    """``Stripe-Should-Retry: false`` stops retries of a 500; ``true`` retries even a 400."""
    load(fake, 50)
    with fake.serve() as base_url:
        fake.fail_next(1, 500, should_retry=False)
        refused = run(engine(InMemoryStore(), fake), connector(fake, base_url))
        assert refused.outcome is Outcome.FAILED
        assert len(fake.requests) == 1

        fake.fail_next(2, 400, should_retry=True)
        store = InMemoryStore()
        healed = run(engine(store, fake), connector(fake, base_url))
        assert healed.outcome is Outcome.COMPLETED, healed.error
        assert [r.status for r in fake.requests[1:4]] == [400, 400, 200]
        assert_matches(store, fake)


def test_a_bad_or_revoked_key_fails_with_auth_error(fake: FakeStripe) -> None:
    """A wrong key and a key revoked after a sync both fail the cycle with AuthError."""
    load(fake, 20)
    store = InMemoryStore()
    with fake.serve() as base_url:
        sync = engine(store, fake)
        wrong = run(sync, connector(fake, base_url, key="sk_test_" + "0" * 40))
        assert wrong.outcome is Outcome.FAILED
        assert wrong.error_class == "AuthError"
        assert run(sync, connector(fake, base_url)).outcome is Outcome.COMPLETED
        fake.revoke_secret_key()
        later(fake)
        revoked = run(sync, connector(fake, base_url))
    assert revoked.error_class == "AuthError"
    assert revoked.error is not None
    assert "Expired API Key" in revoked.error
    state = sync.state(KEY)
    assert state.last_error is not None
    assert state.last_error.auth


def test_a_malformed_record_is_set_aside_and_the_cycle_completes(fake: FakeStripe) -> None:
    """An invoice whose id is not a string is set aside; every other invoice is applied."""
    ids = load(fake, 300)
    fake.corrupt("invoices", ids[150], id=12345)
    store = InMemoryStore()
    with fake.serve() as base_url:
        sync = engine(store, fake)
        result = run(sync, connector(fake, base_url))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.rejected == 1
    [rejected] = sync.rejected(KEY)
    assert "12345" in rejected.reason
    assert transactions_by_id(store, KEY).keys() == fake.ground_truth("invoices").keys() - {
        ids[150]
    }


def test_a_500_storm_fails_the_cycle_keeps_the_cursor_and_the_next_recovers(
    fake: FakeStripe,
) -> None:
    """5xx on every events call outlasts the retries: FAILED, cursor unchanged; the next heals."""
    ids = load(fake, 200)
    store = InMemoryStore()
    with fake.serve() as base_url:
        sync = engine(store, fake)
        assert run(sync, connector(fake, base_url)).outcome is Outcome.COMPLETED
        cursor = sync.state(KEY).cursor
        later(fake)
        for object_id in ids[:20]:
            fake.update_invoice(object_id, description="during the storm")
        later(fake)
        fake.fail_next(10, 500, path="/v1/events")
        failed = run(sync, connector(fake, base_url, retry=RetryPolicy(max_attempts=3)))
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "TransientSourceError"
        assert sync.state(KEY).cursor == cursor
        fake.clear_faults()
        healed = run(sync, connector(fake, base_url))
    assert healed.outcome is Outcome.COMPLETED, healed.error
    assert healed.applied == 20
    assert_matches(store, fake)


def test_the_secret_key_never_reaches_logs_errors_state_or_the_database(
    fake: FakeStripe, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer that echoes the key back is masked in the error, the state, logs and the file."""
    caplog.set_level(logging.DEBUG)
    load(fake, 120)
    echoed = [0]

    def echo(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/invoices" and echoed[0] < 2:
            echoed[0] += 1
            key = request.headers["authorization"].partition(" ")[2]
            return httpx.Response(500, text=f"internal error for key {key}")
        return None

    fake.add_fault(echo)
    with ExitStack() as stack:
        base_url = stack.enter_context(fake.serve())
        store = stack.enter_context(SQLiteStore(tmp_path / "sync.db"))
        sync = engine(store, fake)
        failed = run(sync, connector(fake, base_url, retry=RetryPolicy(max_attempts=2)))
        state_text = repr(sync.state(KEY))
        wrong_key = "sk_test_" + "w" * 40
        refused = run(sync, connector(fake, base_url, key=wrong_key))
        state_text += repr(sync.state(KEY))
        fake.clear_faults()
        sync.resume(KEY)  # two failures in a row, one of them an AuthError, stopped the source
        assert run(sync, connector(fake, base_url)).outcome is Outcome.COMPLETED
        state_text += repr(sync.states())
        assert_matches(store, fake)
    database = b"".join(path.read_bytes() for path in tmp_path.glob("sync.db*"))
    assert failed.outcome is refused.outcome is Outcome.FAILED
    assert failed.error is not None
    assert "internal error" in failed.error
    for secret in (fake.secret_key, wrong_key):
        assert secret not in caplog.text
        assert secret not in str(failed.error) + str(refused.error)
        assert secret not in state_text
        assert secret.encode() not in database
    with pytest.raises(ConfigurationError) as raised:
        StripeConnector(secret_key="pk_live_" + "p" * 30)
    assert "pk_live_" not in str(raised.value)


def test_charges_follow_refunds_and_updates(fake: FakeStripe, store: Store) -> None:
    """Charges: listed in full, then refunds and updates from ``charge.*`` events, not invoices'."""
    made = [fake.create_charge(amount=100 * n) for n in range(1, 6)]
    later(fake)
    with fake.serve() as base_url:
        sync = engine(store, fake)
        assert run(sync, connector(fake, base_url, resource="charges")).applied == 5
        fake.refund_charge(made[0])
        fake.refund_charge(made[1], amount=50)
        fake.update_charge(made[2], description="desk")
        fake.create_invoice()  # another resource's event: not read here
        later(fake)
        result = run(sync, connector(fake, base_url, resource="charges"))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.fetched, result.applied) == (3, 3)
    assert_matches(store, fake, "charges")
    assert transactions_by_id(store, KEY)[made[0]].record.payload["refunded"] is True


def test_reads_are_unordered_and_full_reads_send_no_filter(fake: FakeStripe) -> None:
    """The connector is unordered (checkpointed on completion); a full read lists everything."""
    load(fake, 10)
    with fake.serve() as base_url, closing(connector(fake, base_url)) as source:
        assert source.ordered is False
        pages = list(source.read(Window()))
    assert sum(len(page.records) for page in pages) == 10
    assert "created" not in fake.requests[0].url
    assert "created%5Bgte%5D" in fake.requests[-1].url


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "update", "pay", "void", "delete", "tick", "cycle"]),
        st.integers(min_value=0, max_value=7),  # few targets: the same ones change often
    ),
    max_size=40,
)


@settings(max_examples=15)
@given(steps=_STEPS)
def test_any_history_of_changes_and_cycles_ends_with_the_sink_equal_to_stripe(
    steps: list[tuple[str, int]],
) -> None:
    """Whatever changes happen between cycles, in whichever seconds, each cycle leaves the sink
    equal to Stripe: every object's latest state, never an older one."""
    fake = FakeStripe(clock=ManualClock(T0))
    load(fake, 12, per_second=4)
    store = InMemoryStore()
    with fake.serve() as base_url:
        sync = engine(store, fake)
        for action, pick in [*steps, ("cycle", 0)]:
            truth = fake.ground_truth("invoices")
            target = sorted(truth)[pick % len(truth)] if truth else ""
            status = truth[target]["status"] if target else None
            if action == "create":
                fake.create_invoice(amount_due=100 + pick, status=("draft", "open")[pick % 2])
            elif action == "update" and target:
                fake.update_invoice(target, description=f"v{pick}")
            elif action == "pay" and status == "open":
                fake.pay_invoice(target)
            elif action == "void" and status == "open":
                fake.void_invoice(target)
            elif action == "delete" and status == "draft":
                fake.delete_invoice(target)
            elif action == "tick":
                # Mostly within a second or two; sometimes past the safety lag and lookback.
                fake.clock.advance(timedelta(seconds=(0, 1, 2, 400)[pick % 4]))
            elif action == "cycle":
                result = run(sync, connector(fake, base_url))
                assert result.outcome is Outcome.COMPLETED, result.error
                assert_matches(store, fake)
