"""A real sync on the embedded default, end to end: ``python -m incsync.demo`` (``make demo``).

Three sample sources are synced into one SQLite file: a full cycle with progress, changes at the
source and an incremental cycle, a reset, a cancel and a resume, a source whose API keeps failing
until it is stopped, and one with no recent changes. It prints every step's result and ends with the
status table, and writes the standalone HTML status page.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from incsync.connectors import BaseConnector, InMemoryConnector, InMemorySource, sample_source
from incsync.connectors.base import RawPage
from incsync.connectors.memory import iso_timestamp
from incsync.connectors.sample import invoice
from incsync.cursor import Window
from incsync.engine import SyncEngine
from incsync.errors import TransientSourceError
from incsync.humanize import time_text
from incsync.results import CycleProgress, CycleResult
from incsync.state import SourceState
from incsync.status import StatusPolicy, status_of, statuses_of
from incsync.stores.sqlite import SQLiteStore
from incsync.timestamps import utc_now
from incsync.views import render_html_page, render_text_table

__all__ = ["main"]

ACME = "acme/invoices"
GLOBEX = "globex/invoices"
INITECH = "initech/invoices"


class _UnreachableSource(BaseConnector):
    """Stands for an API that answers every request with a 503."""

    ordered = True
    vendor = "demo"

    def fetch(self, window: Window) -> Iterator[RawPage]:
        raise TransientSourceError(
            "HTTP 503 Service Unavailable from https://api.initech.example/v1/invoices",
            vendor=self.vendor,
            status_code=503,
        )


def _say(text: str = "") -> None:
    print(text, flush=True)


def _progress(progress: CycleProgress) -> None:
    total = f"/{progress.total:,}" if progress.total is not None else ""
    eta = f", ETA {progress.eta.total_seconds():.1f}s" if progress.eta is not None else ""
    line = (
        f"    page {progress.pages:>3}: {progress.fetched:,}{total} records, "
        f"{progress.rate:,.0f} records/s{eta}"
    )
    if sys.stdout.isatty():
        print("\r" + line, end="", flush=True)
    elif progress.pages % 10 == 0 or progress.total == progress.fetched:
        _say(line)


def _report(result: CycleResult) -> None:
    if sys.stdout.isatty() and result.pages:
        print()
    line = (
        f"  -> {result.outcome.value}: {result.fetched:,} fetched, {result.applied:,} applied, "
        f"{result.already_applied:,} already applied, {result.rejected} set aside, "
        f"{result.pages} pages in {result.duration.total_seconds():.2f}s"
    )
    if result.error:
        line += f"\n     error: {result.error_class}: {result.error}"
    _say(line)


def _show_state(state: SourceState, now: datetime, policy: StatusPolicy) -> None:
    status = status_of(state, now=now, policy=policy)
    cursor = state.cursor
    where = "none" if cursor is None else f"({cursor.updated_at.isoformat()}, {cursor.record_id!r})"
    _say(
        f"  state: phase={state.phase.value} generation={state.generation} cursor={where} "
        f"failures={state.consecutive_failures} -> {status.color.value} ({status.label})"
    )


def _change_source(source: InMemorySource, rng: random.Random, now: datetime) -> str:
    ids = sorted(source.ids())
    updated = rng.sample(ids, 25)
    for record_id in updated:
        source.update(record_id, now, amount=f"{rng.randint(100, 99_999)}.00")
    voided = rng.sample(sorted(set(ids) - set(updated)), 5)
    for record_id in voided:
        source.delete(record_id, now)
    # A bulk import: forty new invoices stamped in the same second.
    burst = now.replace(microsecond=0)
    for number in range(len(ids) + 1, len(ids) + 41):
        source.put({**invoice(number, burst, rng), "updated_at": iso_timestamp(burst)})
    return "25 invoices updated, 5 voided, 40 created in the same second"


def run(directory: Path, *, count: int = 5_000, seed: int = 7) -> Path:
    """Run the demo into ``directory`` and return the path of the HTML status page."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "incsync-demo.db"
    for leftover in directory.glob("incsync-demo.db*"):
        leftover.unlink()
    now = utc_now()
    rng = random.Random(seed)
    store = SQLiteStore(database)
    engine = SyncEngine(store)
    policy = StatusPolicy.matching(engine.policy)

    acme = sample_source(count, end=now - timedelta(days=2), seed=seed)
    acme_connector = InMemoryConnector(acme, page_size=250)
    globex = sample_source(count // 5, end=now - timedelta(days=40), seed=seed + 1)

    def step(title: str, key: str, connector: BaseConnector | None = None) -> None:
        _say(f"\n== {title}")
        if connector is not None:
            _report(engine.run_cycle(key, connector, on_progress=_progress))
        _show_state(engine.state(key), utc_now(), policy)

    _say(f"Syncing sample sources into {database}")
    step(f"1. Full sync of {ACME} ({count:,} invoices)", ACME, acme_connector)
    step("2. Nothing changed: an incremental cycle applies nothing", ACME, acme_connector)
    _say(f"\n   At the source: {_change_source(acme, rng, utc_now())}")
    step("3. Incremental cycle picks up exactly those changes", ACME, acme_connector)

    engine.reset(ACME)
    step("4. Reset: the source turns grey until a full cycle completes", ACME)
    step("5. The next cycle re-reads and re-applies every invoice", ACME, acme_connector)

    engine.cancel(ACME)
    step("6. Cancel: cycles are skipped, no transaction is deleted", ACME, acme_connector)
    _say(f"  transactions kept: {store.count_transactions(ACME):,}")
    engine.resume(ACME)
    step("7. Resume: the source syncs again", ACME, acme_connector)

    step(
        f"8. {GLOBEX}: nothing changed there for 40 days (orange)",
        GLOBEX,
        InMemoryConnector(globex, page_size=250),
    )
    _say(f"\n== 9. {INITECH}: its API fails every cycle until the source is stopped (red)")
    for _ in range(engine.policy.max_consecutive_failures):
        _report(engine.run_cycle(INITECH, _UnreachableSource()))
    _show_state(engine.state(INITECH), utc_now(), policy)

    rejected = engine.rejected(ACME)
    _say(f"\nRecords set aside for {ACME}: {len(rejected)}")

    moment = utc_now()
    rows = statuses_of(engine.states(), now=moment, policy=policy)
    _say("\n== Status\n")
    _say(render_text_table(rows, ansi=sys.stdout.isatty()))
    page = directory / "status.html"
    page.write_text(
        render_html_page(rows, title="Automated Import", generated=time_text(moment, now=moment)),
        encoding="utf-8",
    )
    store.close()
    _say(f"Database:    {database}")
    _say(f"Status page: {page}")
    return page


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line."""
    parser = argparse.ArgumentParser(prog="python -m incsync.demo", description=__doc__)
    parser.add_argument(
        "--dir", type=Path, default=Path("demo-output"), help="where to write the database and page"
    )
    parser.add_argument("--count", type=int, default=5_000, help="invoices in the main source")
    arguments = parser.parse_args(argv)
    run(arguments.dir, count=arguments.count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
