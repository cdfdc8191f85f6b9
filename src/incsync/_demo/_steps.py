"""The demo's steps, in the order a person watches them; each shows one behaviour and checks it.

A step runs cycles with the real engine and connectors, prints what happened, and verifies it:
outcomes and counts, the sink against the fake's ground truth, and the colour
:func:`~incsync.status.status_of` gives with the demo's clock.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from incsync._demo._changes import change_hubspot, change_quickbooks, outage
from incsync._demo._checks import SinkComparison, compare_hubspot, compare_quickbooks
from incsync._demo._console import Console
from incsync._demo._world import INVOICE, Connectors, Credentials, Fakes, Scale
from incsync.engine import SyncEngine
from incsync.protocols import Connector
from incsync.results import CycleResult, Outcome
from incsync.state import Phase
from incsync.status import SourceStatus, StatusColor, StatusPolicy, status_of
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import ManualClock
from incsync.testing.fakes import FakeQuickBooks, FakeVendor

__all__ = ["ACME_HUBSPOT", "ACME_QUICKBOOKS", "CYCLE_INTERVAL", "GLOBEX_QUICKBOOKS", "Steps"]

ACME_QUICKBOOKS = "acme/quickbooks-invoices"
ACME_HUBSPOT = "acme/hubspot-deals"
GLOBEX_QUICKBOOKS = "globex/quickbooks-invoices"

CYCLE_INTERVAL = timedelta(minutes=30)
"""How often the demo's scheduler starts a cycle of every source."""

_HUBSPOT_PAGE = 200  # deals per HubSpot search page


def _every(pages: int) -> int:
    """Print about four progress lines per full read."""
    return max(1, round(pages / 4))


def _hhmm(moment: datetime) -> str:
    return f"{moment:%H:%M}"


def _answered(fake: FakeVendor, since: int, status: int) -> int:
    """Return how many requests after the first ``since`` the fake answered with ``status``."""
    return sum(1 for request in fake.requests[since:] if request.status == status)


class Steps:
    """The running demo: the world, the engine on the demo's clock, and one method per step.

    Args:
        console: Where the story is told.
        scale: How much data the fakes hold.
        clock: The clock the fakes, connectors and engine share.
        store: The SQLite store (and sink).
        fakes: The fake sources.
        connectors: The real connectors to them.
        credentials: The host's credential vault.
        rng: Picks the records the steps change.
    """

    def __init__(
        self,
        console: Console,
        scale: Scale,
        clock: ManualClock,
        store: SQLiteStore,
        fakes: Fakes,
        connectors: Connectors,
        credentials: Credentials,
        rng: random.Random,
    ) -> None:
        self.console = console
        self.scale = scale
        self.clock = clock
        self.store = store
        self.engine = SyncEngine(store, clock=clock)
        self.fakes = fakes
        self.connectors = connectors
        self.credentials = credentials
        self.policy = StatusPolicy.matching(self.engine.policy, expected_interval=CYCLE_INTERVAL)
        self.rng = rng
        self.checks = 0

    # -- what every step uses ----------------------------------------------------------------

    def check(self, passed: bool, text: str, *, failure: object = "") -> None:
        """Print a verified fact, or stop the demo when it is false."""
        self.checks += 1
        self.console.check(passed, text, failure=str(failure))

    def status(self, key: str) -> SourceStatus:
        """Return the source's status now, on the demo's clock."""
        return status_of(self.engine.state(key), now=self.clock(), policy=self.policy)

    def show_status(self, key: str, color: StatusColor, *, hover: bool = False) -> SourceStatus:
        """Print the source's status and check its colour."""
        status = self.status(key)
        self.console.status(status, hover=hover)
        self.check(status.color is color, f"{key} is {color.value}", failure=status.color.value)
        return status

    def cycle(self, key: str, connector: Connector, pages: int = 0) -> CycleResult:
        """Run one cycle, with progress lines when ``pages`` (the expected count) is given."""
        progress = self.console.progress(_every(pages)) if pages else None
        result = self.engine.run_cycle(key, connector, on_progress=progress)
        self.console.cycle(result)
        return result

    def completed(self, result: CycleResult, applied: int, text: str) -> None:
        """Check that the cycle completed and applied exactly ``applied`` records (``text``)."""
        self.check(
            result.outcome is Outcome.COMPLETED,
            f"{result.source_key}: the cycle completed",
            failure=result.error or result.outcome.value,
        )
        self.check(result.applied == applied, text, failure=f"{result.applied:,} applied")

    def matches(self, comparison: SinkComparison, what: str, deleted: str) -> None:
        """Check that the sink equals the source's ground truth."""
        gone = ""
        if comparison.tombstones:
            ones = "one" if comparison.tombstones == 1 else "ones"
            gone = f", and the {comparison.tombstones:,} {deleted} {ones} as tombstones"
        self.check(
            comparison.ok,
            f"the sink holds the source's {comparison.live:,} {what} at their latest version{gone}",
            failure=comparison.problems(),
        )

    def invoices_match(self, key: str, fake: FakeQuickBooks) -> None:
        """Check one QuickBooks source's transactions against its fake company."""
        self.matches(
            compare_quickbooks(self.store.transactions(key), fake, INVOICE), "invoices", "deleted"
        )

    def deals_match(self) -> None:
        """Check the HubSpot source's transactions against the fake portal."""
        self.matches(
            compare_hubspot(self.store.transactions(ACME_HUBSPOT), self.fakes.hubspot),
            "deals",
            "archived",
        )

    # -- the steps ---------------------------------------------------------------------------

    def servers(self, urls: Sequence[str]) -> None:
        """Step 1: say what the fakes serve, and where (in :meth:`Fakes.served`'s order)."""
        fakes, scale = self.fakes, self.scale
        newest = max(
            entity["MetaData"]["LastUpdatedTime"] for entity in fakes.globex.entities(INVOICE)
        )
        self.console.heading("1. Fake vendor servers on loopback, with three companies' history")
        self.console.item(
            "quickbooks",
            f"{urls[0]}  Acme, {scale.invoices:,} invoices over 60 days "
            f"({scale.invoice_burst:,} in one second)",
        )
        self.console.item(
            "hubspot",
            f"{urls[1]}  Acme, {scale.deals:,} deals over 60 days "
            f"({scale.deal_burst:,} in one millisecond)",
        )
        self.console.item(
            "quickbooks",
            f"{urls[2]}  Globex, {scale.old_invoices:,} invoices (the newest from {newest[:10]})",
        )
        self.console.item(
            "hubspot",
            f"{urls[3]}  Initech, {scale.old_invoices:,} deals (its app token, revoked, is all "
            "the host has)",
        )
        self.console.item(
            "clock",
            f"{self.clock():%Y-%m-%d %H:%M} UTC, shared by the fakes, the connectors and the "
            f"engine;\nit moves only when the demo moves it: a cycle every "
            f"{CYCLE_INTERVAL.seconds // 60} minutes, and the waits between retries.",
        )

    def full_sync_quickbooks(self) -> None:
        """Step 2: a full sync of QuickBooks invoices, signed with OAuth2 tokens."""
        self.console.heading(f"2. Full sync of {ACME_QUICKBOOKS} (QuickBooks query API, OAuth2)")
        pages = self.scale.invoices // self.scale.page_size
        result = self.cycle(ACME_QUICKBOOKS, self.connectors.quickbooks, pages)
        self.console.item(
            "oauth",
            f"{self.credentials.refreshes} refresh at the fake's token endpoint; the new "
            f"refresh token was stored",
        )
        self.completed(result, self.scale.invoices, f"all {self.scale.invoices:,} invoices applied")
        self.check(
            self.credentials.rotations >= 1, "the connector handed the rotated refresh token over"
        )
        self.invoices_match(ACME_QUICKBOOKS, self.fakes.quickbooks)
        self.show_status(ACME_QUICKBOOKS, StatusColor.GREEN)

    def full_sync_hubspot(self) -> None:
        """Step 3: a full sync of HubSpot deals, through HubSpot's search limits."""
        self.console.heading(
            f"3. Full sync of {ACME_HUBSPOT} (HubSpot search API, private-app token)"
        )
        fake = self.fakes.hubspot
        before, started = len(fake.requests), self.clock()
        result = self.cycle(
            ACME_HUBSPOT, self.connectors.hubspot, self.scale.deals // _HUBSPOT_PAGE
        )
        throttled = _answered(fake, before, 429)
        waited = (self.clock() - started).total_seconds()
        self.console.item(
            "limits",
            f"{throttled} of {len(fake.requests) - before} requests throttled (5 searches a "
            f"second allowed); waited {waited:.0f} s of demo time",
        )
        self.completed(result, self.scale.deals, f"all {self.scale.deals:,} deals applied")
        self.deals_match()
        self.show_status(ACME_HUBSPOT, StatusColor.GREEN)

    def incremental(self) -> None:
        """Step 4: changes at both sources, and incremental cycles that apply exactly those."""
        since = self.clock() + timedelta(minutes=5)
        until = since + timedelta(minutes=10)
        self.clock.set(until)
        invoices = change_quickbooks(
            self.fakes.quickbooks, self.fakes.invoice_ids, self.scale, self.rng, since
        )
        deals = change_hubspot(self.fakes.hubspot, self.fakes.deal_ids, self.scale, self.rng, since)
        self.clock.set(since + CYCLE_INTERVAL - timedelta(minutes=5))
        self.console.heading(
            f"4. Changes between {_hhmm(since)} and {_hhmm(until)}, "
            f"then an incremental cycle of each source at {_hhmm(self.clock())}"
        )
        self.console.item("quickbooks", invoices.describe())
        self.console.item("hubspot", deals.describe())
        self.console.subheading(ACME_QUICKBOOKS)
        result = self.cycle(ACME_QUICKBOOKS, self.connectors.quickbooks)
        self.completed(
            result, invoices.total, f"exactly the {invoices.total:,} changed invoices applied"
        )
        self.invoices_match(ACME_QUICKBOOKS, self.fakes.quickbooks)
        self.console.subheading(ACME_HUBSPOT)
        result = self.cycle(ACME_HUBSPOT, self.connectors.hubspot)
        self.completed(result, deals.total, f"exactly the {deals.total:,} changed deals applied")
        self.deals_match()

    def outage(self) -> None:
        """Step 5: HubSpot answers 500 to everything; cycles fail until the source is red."""
        limit = self.engine.policy.max_consecutive_failures
        self.console.heading(
            f"5. HubSpot's API answers 500 to every request; {limit} cycles fail in a row"
        )
        fake = self.fakes.hubspot
        fake.add_fault(outage)
        held = self.store.count_transactions(ACME_HUBSPOT)
        refreshes = self.credentials.refreshes
        outcomes: list[tuple[Outcome, Outcome]] = []
        error = ""
        self.console.say(f"  {'time':<6} {ACME_HUBSPOT:<46} {ACME_QUICKBOOKS}")
        for _ in range(limit):
            self.clock.advance(CYCLE_INTERVAL)
            before = len(fake.requests)
            hubspot = self.engine.run_cycle(ACME_HUBSPOT, self.connectors.hubspot)
            quickbooks = self.engine.run_cycle(ACME_QUICKBOOKS, self.connectors.quickbooks)
            outcomes.append((hubspot.outcome, quickbooks.outcome))
            error = error or f"{hubspot.error_class}: {hubspot.error}"
            failed = f"{hubspot.outcome.value} ({_answered(fake, before, 500)} x 500)"
            status = self.console.status_text(self.status(ACME_HUBSPOT))
            self.console.say(
                f"  {_hhmm(self.clock()):<6} {failed:<18} {status:<27} "
                f"{quickbooks.outcome.value}, {quickbooks.applied} applied"
            )
        self.console.item("error", error)
        self.console.item(
            "oauth",
            f"QuickBooks access tokens expire after an hour: refreshed "
            f"{self.credentials.refreshes - refreshes} times meanwhile, each new refresh "
            f"token kept",
        )
        self.check(
            outcomes == [(Outcome.FAILED, Outcome.COMPLETED)] * limit,
            "every HubSpot cycle failed while QuickBooks kept syncing",
            failure=[f"{a.value}/{b.value}" for a, b in outcomes],
        )
        self.check(
            self.credentials.refreshes > refreshes,
            "expired QuickBooks tokens were refreshed before use, on the demo clock",
        )
        state = self.engine.state(ACME_HUBSPOT)
        self.check(
            state.phase is Phase.STOPPED and state.consecutive_failures == limit,
            f"{ACME_HUBSPOT} stopped after {limit} failed cycles in a row",
            failure=f"{state.phase.value} after {state.consecutive_failures}",
        )
        self.show_status(ACME_HUBSPOT, StatusColor.RED, hover=True)
        self.clock.advance(CYCLE_INTERVAL)
        before = len(fake.requests)
        result = self.cycle(ACME_HUBSPOT, self.connectors.hubspot)
        self.check(
            result.outcome is Outcome.SKIPPED_STOPPED and len(fake.requests) == before,
            "a stopped source is not called again",
            failure=result.outcome.value,
        )
        self.check(
            self.store.count_transactions(ACME_HUBSPOT) == held,
            f"all {held:,} deal transactions kept",
        )

    def reset(self) -> None:
        """Step 6: the API recovers; a reset turns the source grey, a full re-sync green."""
        self.console.heading("6. The API recovers; a reset, then a full re-sync")
        self.fakes.hubspot.clear_faults()
        self.engine.reset(ACME_HUBSPOT)
        state = self.engine.state(ACME_HUBSPOT)
        self.console.item(
            "reset", f"generation {state.generation}, cursor cleared, failures forgotten"
        )
        self.show_status(ACME_HUBSPOT, StatusColor.GREY)
        self.clock.advance(CYCLE_INTERVAL)
        live = len(self.fakes.hubspot.ground_truth("deals"))
        archived = len(self.fakes.hubspot.archived("deals"))
        result = self.cycle(ACME_HUBSPOT, self.connectors.hubspot, live // _HUBSPOT_PAGE)
        self.completed(
            result,
            live + archived,
            f"all {live + archived:,} deals applied again under the new generation "
            f"({archived} archived ones as tombstones)",
        )
        self.deals_match()
        self.show_status(ACME_HUBSPOT, StatusColor.GREEN)

    def cancel(self) -> None:
        """Step 7: a cancelled source is skipped and keeps its transactions (grey)."""
        self.console.heading(f"7. Cancel {ACME_QUICKBOOKS}")
        fake = self.fakes.quickbooks
        held = self.store.count_transactions(ACME_QUICKBOOKS)
        self.engine.cancel(ACME_QUICKBOOKS)
        self.clock.advance(CYCLE_INTERVAL)
        deleted = fake.deleted_ids(INVOICE)
        live = next(record_id for record_id in self.fakes.invoice_ids if record_id not in deleted)
        fake.update(INVOICE, live, {"Balance": 0})
        before = len(fake.requests)
        result = self.cycle(ACME_QUICKBOOKS, self.connectors.quickbooks)
        self.check(
            result.outcome is Outcome.SKIPPED_CANCELLED and len(fake.requests) == before,
            "the cycle was skipped without calling QuickBooks, though an invoice changed",
            failure=result.outcome.value,
        )
        self.check(
            self.store.count_transactions(ACME_QUICKBOOKS) == held,
            f"all {held:,} invoice transactions kept",
        )
        self.show_status(ACME_QUICKBOOKS, StatusColor.GREY, hover=True)

    def quiet_source(self) -> None:
        """Step 8: a company with no change for weeks syncs fine and shows orange."""
        self.console.heading(
            f"8. Full sync of {GLOBEX_QUICKBOOKS}: nothing changed there for weeks"
        )
        result = self.cycle(
            GLOBEX_QUICKBOOKS,
            self.connectors.globex,
            self.scale.old_invoices // self.scale.page_size,
        )
        self.completed(
            result, self.scale.old_invoices, f"all {self.scale.old_invoices:,} invoices applied"
        )
        self.invoices_match(GLOBEX_QUICKBOOKS, self.fakes.globex)
        self.show_status(GLOBEX_QUICKBOOKS, StatusColor.ORANGE, hover=True)
