"""Every built-in connector over loopback HTTP: a heavy gap between two cycles loses no delete.

Between two cycles (SQLite store) each fake takes 2,100 changes: 1,200 creates, 600 updates and
300 deletes, shuffled, three to a second, with 300 of them (deletes among them) stamped in one
single moment so that the crowded-tick reads and every page and cap boundary are crossed. After
the second cycle every delete is a tombstone, the live records are the source's, and
``count_live()`` equals the source's live count (``None`` where the API has no count). Each
connector also states the retention of its delete channel.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest

from incsync import SQLiteStore, SyncEngine, SyncPolicy
from incsync.connectors import RestConfig
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.rest import RestConnector
from incsync.connectors.retry import RetryPolicy
from incsync.results import Outcome
from incsync.status import status_of
from incsync.testing import ManualClock
from incsync.testing.fakes._server import FakeVendor
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.testing.fakes.pipedrive import FakePipedrive, PipedriveLimits
from incsync.testing.fakes.salesforce import FakeSalesforce, FieldValue
from incsync.testing.fakes.stripe import FakeStripe
from incsync.testing.fakes.xero import FakeXero, XeroLimits
from incsync.vendors.hubspot import HubSpotConnector
from incsync.vendors.pipedrive import PipedriveConnector
from incsync.vendors.salesforce import SalesforceConnector
from incsync.vendors.stripe import StripeConnector
from incsync.vendors.xero import XeroConnector, xero_auth
from tests.helpers import transactions_by_id

UTC = timezone.utc
KEY = "gap"
INITIAL, CREATES, UPDATES, DELETES, CROWDED = 1_000, 1_200, 600, 300, 300
FAST = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, jitter=0.0)


def no_sleep(_seconds: float) -> None:
    """Waits nothing."""


@attrs.define
class World:
    """One fake vendor and how the test drives it, the same way for every vendor.

    Attributes:
        fake: The fake, served over loopback HTTP.
        clock: The fake's clock, shared by the engine and the connector.
        connect: Builds the connector for the fake's base URL.
        load: Writes the history the first cycle reads; returns its ids.
        create: Creates one record stamped at a moment; returns its id.
        update: Changes one record, stamped at a moment.
        delete: Deletes (voids, archives) one record, stamped at a moment.
        live: The ids of the records the source holds as live now.
        retention: The ``delete_retention`` the connector must state.
        counts: Whether the connector has a count check.
    """

    fake: FakeVendor
    clock: ManualClock
    connect: Callable[[str], HttpConnector]
    load: Callable[[datetime], list[str]]
    create: Callable[[datetime], str]
    update: Callable[[str, datetime], None]
    delete: Callable[[str, datetime], None]
    live: Callable[[], set[str]]
    retention: timedelta | None
    counts: bool = True


def _options(clock: ManualClock) -> HttpOptions:
    return HttpOptions(retry=FAST, sleep=no_sleep, clock=clock)


def _history(start: datetime) -> list[datetime]:
    return [start + timedelta(seconds=n) for n in range(INITIAL)]


def hubspot() -> World:
    unlimited = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)
    fake = FakeHubSpot(index_lag=timedelta(0), limits=unlimited)

    def connect(base_url: str) -> HttpConnector:
        return HubSpotConnector(
            base_url,
            auth=BearerToken(fake.private_app_token),
            include_archived=True,
            options=_options(fake.clock),
        )

    return World(
        fake,
        fake.clock,
        connect,
        load=lambda start: fake.load("deals", _history(start), {"dealname": "history"}),
        create=lambda at: fake.create("deals", {"dealname": "new"}, modified_at=at),
        update=lambda i, at: fake.update("deals", i, {"amount": "20"}, modified_at=at),
        delete=lambda i, at: fake.archive("deals", i, at=at),
        live=lambda: set(fake.ground_truth("deals")),
        retention=timedelta(days=90),
    )


def salesforce() -> World:
    clock = ManualClock(datetime(2024, 6, 3, 9, 0, tzinfo=UTC))
    fake = FakeSalesforce(clock=clock, client_id="app", client_secret="app-secret")

    def connect(base_url: str) -> HttpConnector:
        return SalesforceConnector(
            "app",
            "app-secret",
            fake.refresh_token,
            login_url=base_url,
            include_deleted=True,
            batch_size=200,
            options=_options(clock),
        )

    def load(start: datetime) -> list[str]:
        rows: list[dict[str, FieldValue]] = [
            {"Name": f"o{n}", "SystemModstamp": at} for n, at in enumerate(_history(start))
        ]
        return fake.bulk_load("Opportunity", rows)

    return World(
        fake,
        clock,
        connect,
        load,
        create=lambda at: fake.add_record("Opportunity", {"Name": "new"}, at=at),
        update=lambda i, at: fake.update_record("Opportunity", i, {"Amount": 20.0}, at=at),
        delete=lambda i, at: fake.delete_record("Opportunity", i, at=at),
        live=lambda: {str(row["Id"]) for row in fake.records("Opportunity")},
        retention=timedelta(days=15),
    )


def xero(endpoint: str) -> World:
    fake = FakeXero(limits=XeroLimits(per_minute=None, per_day=None), endpoint=endpoint)
    tokens = fake.grant_tokens()

    def connect(base_url: str) -> HttpConnector:
        auth = xero_auth(
            fake.client_id,
            fake.client_secret,
            tokens.refresh_token,
            token_url=f"{base_url}/connect/token",
            clock=fake.clock,
        )
        return XeroConnector(
            fake.tenant_id,
            auth=auth,
            endpoint=endpoint,
            base_url=f"{base_url}/api.xro/2.0",
            options=_options(fake.clock),
        )

    gone = {"DELETED", "VOIDED", "ARCHIVED", "GDPRREQUEST"}
    status_field = "ContactStatus" if endpoint == "Contacts" else "Status"
    rng = random.Random(endpoint)

    def delete(document_id: str, at: datetime) -> None:
        if endpoint == "Contacts":
            fake.archive(document_id, at=at)
        elif rng.random() < 0.5:
            fake.void(document_id, at=at)
        else:
            fake.delete(document_id, at=at)

    return World(
        fake,
        fake.clock,
        connect,
        load=lambda start: fake.bulk_load(_history(start)),
        create=lambda at: fake.add(updated_at=at),
        update=lambda i, at: fake.update(i, {"Reference": "changed"}, updated_at=at),
        delete=delete,
        live=lambda: {
            key for key, doc in fake.ground_truth().items() if doc[status_field] not in gone
        },
        retention=None,
    )


def pipedrive() -> World:
    fake = FakePipedrive(limits=PipedriveLimits(per_window=None))

    def connect(base_url: str) -> HttpConnector:
        return PipedriveConnector(
            base_url, api_token=fake.api_token, page_size=100, options=_options(fake.clock)
        )

    return World(
        fake,
        fake.clock,
        connect,
        load=lambda start: [str(i) for i in fake.load(_history(start), {"title": "history"})],
        create=lambda at: str(fake.create({"title": "new"}, at=at)),
        update=lambda i, at: fake.update(int(i), {"title": "changed"}, at=at),
        delete=lambda i, at: fake.delete(int(i), at=at),
        live=lambda: {key for key, deal in fake.ground_truth().items() if not deal["is_deleted"]},
        retention=timedelta(days=30),
    )


def stripe() -> World:
    fake = FakeStripe()

    def connect(base_url: str) -> HttpConnector:
        return StripeConnector(base_url, secret_key=fake.secret_key, options=_options(fake.clock))

    def stamped(at: datetime) -> None:
        # Stripe stamps every change with its own clock: the clock moves to the moment instead.
        fake.clock.set(max(at, fake.clock()))

    def create(at: datetime) -> str:
        stamped(at)
        return fake.create_invoice()

    def update(invoice_id: str, at: datetime) -> None:
        stamped(at)
        fake.update_invoice(invoice_id, description="changed")

    def delete(invoice_id: str, at: datetime) -> None:
        stamped(at)
        fake.delete_invoice(invoice_id)

    return World(
        fake,
        fake.clock,
        connect,
        load=lambda start: fake.load("invoices", _history(start - timedelta(days=40))),
        create=create,
        update=update,
        delete=delete,
        live=lambda: set(fake.ground_truth("invoices")),
        retention=timedelta(days=30),
        counts=False,
    )


def rest() -> World:
    fake = FakeGenericRest(paging="offset", max_page_size=100, deleted_retention=timedelta(days=7))
    config = RestConfig.from_mapping(
        {
            "base_url": "http://placeholder.invalid",
            "path": "/v1/items",
            "ordered": True,
            "params": {"include_deleted": True},
            "filter": {"param": "updated_since"},
            "records": {"path": "data.items", "updated_at": "meta.updated_at"},
            "tombstone": {"field": "status", "values": ["deleted"], "retention_days": 7},
            "count": {"total_path": "meta.total", "params": {"include_deleted": False}},
            "auth": {"kind": "bearer", "secret": "TOKEN"},
            "paging": {"style": "offset", "size": 100},
        }
    )

    def connect(base_url: str) -> HttpConnector:
        return RestConnector(
            attrs.evolve(config, base_url=base_url),
            secrets={"TOKEN": fake.token},
            options=_options(fake.clock),
        )

    def load(start: datetime) -> list[str]:
        return [fake.create({"name": "history"}, at) for at in _history(start)]

    return World(
        fake,
        fake.clock,
        connect,
        load,
        create=lambda at: fake.create({"name": "new"}, at),
        update=lambda i, at: fake.update(i, {"name": "changed"}, at),
        delete=fake.delete,
        live=lambda: set(fake.ground_truth()),
        retention=timedelta(days=7),
    )


WORLDS: dict[str, Callable[[], World]] = {
    "hubspot": hubspot,
    "salesforce": salesforce,
    "xero-invoices": lambda: xero("Invoices"),
    "xero-contacts": lambda: xero("Contacts"),
    "pipedrive": pipedrive,
    "stripe": stripe,
    "rest": rest,
}


@attrs.frozen
class Cycles:
    """One connector on the served fake, one engine on a SQLite store."""

    store: SQLiteStore
    connector: HttpConnector
    engine: SyncEngine

    def run(self) -> None:
        """Run one cycle; it must complete."""
        result = self.engine.run_cycle(KEY, self.connector)
        assert result.outcome is Outcome.COMPLETED, result.error


@contextmanager
def cycling(world: World, path: Path, policy: SyncPolicy | None = None) -> Iterator[Cycles]:
    """Serve the fake over loopback HTTP and yield what runs cycles against it."""
    with (
        SQLiteStore(path / "incsync.db") as store,
        world.fake.serve() as base_url,
        closing(world.connect(base_url)) as connector,
    ):
        yield Cycles(store, connector, SyncEngine(store, clock=world.clock, policy=policy))


def plan(ids: list[str], rng: random.Random) -> list[tuple[str, str | None]]:
    """2,100 changes, shuffled: creates, updates of records kept, deletes of other records."""
    chosen = rng.sample(ids, UPDATES + DELETES)
    changes: list[tuple[str, str | None]] = [("create", None)] * CREATES
    changes += [("update", i) for i in chosen[:UPDATES]]
    changes += [("delete", i) for i in chosen[UPDATES:]]
    rng.shuffle(changes)
    return changes


@pytest.mark.parametrize("vendor", sorted(WORLDS))
def test_a_gap_of_2100_changes_with_300_deletes_tombstones_every_delete(
    vendor: str, tmp_path: Path
) -> None:
    """2,100 changes between two cycles, 300 of them deletes, leave the sink equal to the source.

    Every delete arrives as a tombstone whatever page, cap or crowded moment it falls in; the
    count check matches the source's live count; the delete channel's retention is stated.
    """
    world = WORLDS[vendor]()
    start = world.clock() - timedelta(days=3)
    ids = world.load(start)
    with cycling(world, tmp_path) as cycles:
        cycles.run()
        changes = plan(ids, random.Random(vendor))
        moment = world.clock() + timedelta(minutes=1)
        crowded_from = len(changes) // 2
        deleted: set[str] = set()
        for number, (kind, record_id) in enumerate(changes):
            crowded = crowded_from <= number < crowded_from + CROWDED
            at = moment if crowded else moment + timedelta(seconds=number // 3)
            if kind == "create":
                world.create(at)
            elif kind == "update":
                assert record_id is not None
                world.update(record_id, at)
            else:
                assert record_id is not None
                world.delete(record_id, at)
                deleted.add(record_id)
        assert len(deleted) == DELETES
        assert any(kind == "delete" for kind, _ in changes[crowded_from:][:CROWDED])
        world.clock.set(max(world.clock(), moment + timedelta(hours=1)))
        cycles.run()

        held = transactions_by_id(cycles.store, KEY)
        tombstones = {key for key, t in held.items() if t.record.deleted}
        live = {key for key, t in held.items() if not t.record.deleted}
        assert deleted <= tombstones, sorted(deleted - tombstones)[:5]
        assert live == world.live()
        connector = cycles.connector
        assert connector.delete_retention == world.retention
        assert connector.count_live() == (len(world.live()) if world.counts else None)


@pytest.mark.parametrize(
    "vendor", sorted(name for name, world in WORLDS.items() if world().retention is not None)
)
def test_deletes_made_while_cancelled_past_the_retention_are_swept_after_resume(
    vendor: str, tmp_path: Path
) -> None:
    """Deletes made while the source was cancelled for longer than its delete channel keeps them.

    On resume the engine resets the source (a gap past ``delete_retention``) and the full re-read
    that follows tombstones every record it no longer finds; nothing is removed.
    """
    world = WORLDS[vendor]()
    assert world.retention is not None
    ids = world.load(world.clock() - timedelta(days=3))
    with cycling(world, tmp_path) as cycles:
        cycles.run()
        cycles.engine.cancel(KEY)
        deleted = set(random.Random(vendor).sample(ids, 50))
        for record_id in sorted(deleted):
            world.delete(record_id, world.clock())
        world.clock.set(world.clock() + world.retention + timedelta(days=1))
        cycles.engine.resume(KEY)

        gap = cycles.engine.run_cycle(KEY, cycles.connector)
        assert gap.outcome is Outcome.INTERRUPTED_RESET, gap.error
        assert gap.error is not None
        assert "keeps deletes for" in gap.error
        result = cycles.engine.run_cycle(KEY, cycles.connector)
        assert result.outcome is Outcome.COMPLETED, result.error
        # The channel forgot those deletes: only the sweep finds them.
        assert result.swept == len(deleted)

        held = transactions_by_id(cycles.store, KEY)
        assert set(held) == set(ids)  # nothing removed
        tombstones = {key for key, t in held.items() if t.record.deleted}
        assert tombstones == deleted
        assert {key for key, t in held.items() if not t.record.deleted} == world.live()


@pytest.mark.parametrize("vendor", sorted(WORLDS))
def test_a_reset_after_deletes_at_the_source_leaves_them_tombstones_and_removes_nothing(
    vendor: str, tmp_path: Path
) -> None:
    """Reset after deletes at the source: the full re-read ends with every delete a tombstone.

    Whether the re-read reads a delete from the vendor's channel or its sweep finds the record
    gone, the host ends equal to the source and keeps every transaction it had.
    """
    world = WORLDS[vendor]()
    ids = world.load(world.clock() - timedelta(days=3))
    with cycling(world, tmp_path) as cycles:
        cycles.run()
        deleted = set(random.Random(vendor).sample(ids, 50))
        for record_id in sorted(deleted):
            world.delete(record_id, world.clock())
        world.clock.set(world.clock() + timedelta(minutes=10))
        cycles.engine.reset(KEY)
        cycles.run()

        held = transactions_by_id(cycles.store, KEY)
        assert set(held) == set(ids)  # nothing removed
        assert {key for key, t in held.items() if t.record.deleted} == deleted
        assert {key for key, t in held.items() if not t.record.deleted} == world.live()


@pytest.mark.parametrize("vendor", sorted(name for name, world in WORLDS.items() if world().counts))
def test_a_count_drift_planted_in_the_fake_is_detected_shown_and_reconciled(
    vendor: str, tmp_path: Path
) -> None:
    """A record the incremental reads cannot see (stamped behind the cursor) shows as a drift.

    The count check finds it, the state, the hover and the result say so, and with
    ``reconcile_drift`` a drift found twice in a row is reconciled: by id in the same cycle where
    the connector lists ids, otherwise by a reset whose full re-read brings the record; the next
    count agrees.
    """
    world = WORLDS[vendor]()
    start = world.clock() - timedelta(days=3)
    ids = world.load(start)
    policy = SyncPolicy(count_interval=timedelta(minutes=1), reconcile_drift=True)
    with cycling(world, tmp_path, policy) as cycles:
        cycles.run()
        first = cycles.store.load(KEY).count_check
        assert first is not None
        assert first.drift == 0
        hidden = world.create(start - timedelta(hours=1))  # behind the cursor: never read
        drifts = []
        for _ in range(2):
            world.clock.set(world.clock() + timedelta(minutes=2))
            cycles.run()
            check = cycles.store.load(KEY).count_check
            assert check is not None
            drifts.append(check.drift)
        assert drifts == [1, 1]
        state = cycles.store.load(KEY)
        assert f"The source has {len(ids) + 1:,} live records; {len(ids):,} are imported" in (
            status_of(state, now=world.clock()).hover
        )
        assert hidden not in transactions_by_id(cycles.store, KEY)

        world.clock.set(world.clock() + timedelta(minutes=2))
        reconciling = cycles.engine.run_cycle(KEY, cycles.connector)
        if cycles.connector.lists_ids:
            # Reconciled by id in the same cycle: the hidden record fetched, no reset.
            assert reconciling.outcome is Outcome.COMPLETED, reconciling.error
            assert reconciling.reconcile_fetched == 1
        else:
            assert reconciling.outcome is Outcome.INTERRUPTED_RESET, reconciling.error
            assert reconciling.error is not None
            assert "out of step with the source" in reconciling.error
            cycles.run()
        assert hidden in transactions_by_id(cycles.store, KEY)
        check = cycles.store.load(KEY).count_check
        assert check is not None
        assert check.drift == 0
