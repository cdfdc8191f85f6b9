"""``make demo``: the real connectors sync fake QuickBooks and HubSpot servers into a SQLite file.

``python -m incsync.demo [--output DIR] [--quick | --scale FACTOR]`` starts the fakes of
:mod:`incsync.testing.fakes` on loopback ports with a company's history (20,000 invoices, 20,000
deals, bursts that share one second or one millisecond), then syncs them over real HTTP with
:class:`~incsync.vendors.quickbooks.QuickBooksConnector` (OAuth2 against the fake's token
endpoint) and :class:`~incsync.vendors.hubspot.HubSpotConnector` (a private-app token):
full syncs with progress; changes at the sources and incremental cycles that pick up exactly
those; an API that answers 500 to everything until its source turns red; a reset (grey) and a
full re-sync (green); a cancel; a company with no change for weeks (orange). Then the ``incsync``
command takes over, in processes of its own, with a config file the demo writes: it syncs a
fourth source whose app token was revoked until it stops (red), and shows every source's status
(the table, the HTML status page and the monitoring check), one of each colour. The demo ends
with what a commission engine would see: this month's deals won and invoices paid per
salesperson, added up from the transactions the store kept mapped with each source's preset.

Every step checks what it shows (outcomes, counts, the sink against each fake's ground truth,
colours, the command's output and exit codes) and the run ends by checking that no credential
reached the database, the page, the log or the config file. The first failed check stops the demo
with exit status 1, so ``make demo`` fails when the product is broken. Until the command takes
over, time is a clock the demo moves, shared by the fakes, the connectors and the engine, and
statuses are computed with it; the command runs on the real clock, which that one ends behind.
Nothing leaves the loopback interface.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import attrs

from incsync._demo._checks import leaks
from incsync._demo._command import INITECH_HUBSPOT, CommandSteps
from incsync._demo._commission import MAPPINGS, commission
from incsync._demo._console import CheckFailedError, Console
from incsync._demo._steps import ACME_HUBSPOT, ACME_QUICKBOOKS, GLOBEX_QUICKBOOKS, Steps
from incsync._demo._world import Credentials, Scale, connect, load_fakes
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import ManualClock
from incsync.timestamps import utc_now

__all__ = [
    "ACME_HUBSPOT",
    "ACME_QUICKBOOKS",
    "GLOBEX_QUICKBOOKS",
    "INITECH_HUBSPOT",
    "QUICK_SCALE",
    "DemoOutput",
    "main",
    "run",
]

QUICK_SCALE = 0.05
"""The share of the default data ``--quick`` makes (1,000 invoices and deals): a few seconds."""

# The demo's clock starts this long before the present, so that it ends near it and behind it:
# the incsync command, which shows the last steps, runs on the real clock.
_HEAD_START = timedelta(hours=5)


@attrs.frozen
class DemoOutput:
    """The files a demo run leaves behind.

    Args:
        database: The SQLite file: states, transactions and set-aside records.
        page: The standalone HTML status page, written by ``incsync status --html``.
        log: What incsync logged during the run, stamped with the demo's clock.
        config: The ``incsync`` command's config file for the demo's sources and database.
    """

    database: Path
    page: Path
    log: Path
    config: Path

    @classmethod
    def under(cls, directory: Path) -> DemoOutput:
        """Return the files' places in ``directory``."""
        return cls(
            directory / "incsync-demo.db",
            directory / "status.html",
            directory / "incsync-demo.log",
            directory / "incsync.toml",
        )

    def files(self) -> list[Path]:
        """Return every file of the run, SQLite's side files included."""
        sides = [self.database.with_name(self.database.name + end) for end in ("-wal", "-shm")]
        return [self.database, *sides, self.page, self.log, self.config]


class _DemoClockFormatter(logging.Formatter):
    """Stamps log lines with the demo's clock, so they match the times the steps print."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._clock = clock

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        """Return the demo clock's time, to the second."""
        return f"{self._clock():%Y-%m-%d %H:%M:%S}"


@contextmanager
def _logging_to(path: Path, clock: ManualClock) -> Iterator[None]:
    """Send incsync's log to ``path`` while the demo runs, so the terminal shows only the steps."""
    logger = logging.getLogger("incsync")
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(_DemoClockFormatter(clock))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _start_of_demo() -> datetime:
    hour = utc_now().replace(minute=0, second=0, microsecond=0)
    return hour - _HEAD_START


def run(
    directory: Path,
    *,
    scale: Scale | None = None,
    console: Console | None = None,
    seed: int = 7,
    start: datetime | None = None,
) -> DemoOutput:
    """Run the demo, writing its database, status page and log into ``directory``.

    Args:
        directory: Where the files go (created if missing; an earlier run's files are replaced).
        scale: How much data the fakes hold; the default scale when omitted.
        console: Where the steps are told; standard output when omitted.
        seed: Seeds the data and the order of ties, so a run can be repeated.
        start: The demo clock's first reading (aware); a few hours before now when omitted.

    Returns:
        The files written.

    Raises:
        CheckFailedError: A check failed: the product did not do what the step shows.
    """
    scale = scale or Scale()
    console = console or Console()
    output = DemoOutput.under(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in output.files():
        leftover.unlink(missing_ok=True)
    began = time.perf_counter()
    clock = ManualClock(start or _start_of_demo())
    rng = random.Random(seed)
    credentials = Credentials()
    console.say("incsync demo: real connectors, fake vendor servers on loopback, a SQLite file")
    with ExitStack() as stack:
        stack.enter_context(_logging_to(output.log, clock))
        fakes = load_fakes(clock, scale, rng)
        urls = (
            stack.enter_context(fakes.quickbooks.serve()),
            stack.enter_context(fakes.hubspot.serve()),
            stack.enter_context(fakes.globex.serve()),
            stack.enter_context(fakes.initech.serve()),
        )
        store = stack.enter_context(SQLiteStore(output.database, mappings=MAPPINGS))
        connectors = connect(
            fakes, urls, clock=clock, credentials=credentials, scale=scale, rng=rng
        )
        stack.enter_context(closing(connectors))
        steps = Steps(console, scale, clock, store, fakes, connectors, credentials, rng)
        steps.servers(urls)
        steps.full_sync_quickbooks()
        steps.full_sync_hubspot()
        steps.incremental()
        steps.outage()
        steps.reset()
        steps.cancel()
        steps.quiet_source()
        command = CommandSteps(steps, output.config, output.database, output.page)
        command.write_config(urls)
        command.revoked_token()
        command.status()
        commission(steps, 11)
    # The store is closed now, so everything it wrote is in the files searched.
    leaking = leaks(output.files(), credentials.seen)
    steps.check(
        not leaking,
        f"none of the {len(credentials.seen)} credentials used is in the database, page, log or "
        "config file",
        failure=", ".join(leaking),
    )
    console.say()
    console.item("database", str(output.database))
    console.item("page", str(output.page))
    console.item("log", str(output.log))
    console.item("config", f"{output.config} (incsync status --config {output.config})")
    console.say()
    seconds = time.perf_counter() - began
    console.say(f"All {steps.checks} checks passed in {seconds:.1f} s.")
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line; return 0, or 1 when a check failed.

    Args:
        argv: The arguments (``sys.argv[1:]`` when omitted).
    """
    parser = argparse.ArgumentParser(
        prog="python -m incsync.demo",
        description="Sync fake QuickBooks and HubSpot servers into SQLite with the real "
        "connectors, step by step, checking every step.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo-output"),
        metavar="DIR",
        help="where to write the database, status page and log (default: demo-output)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help=f"a small run ({QUICK_SCALE:g} of the default data), for tests",
    )
    size.add_argument(
        "--scale",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="multiply the default data (20,000 invoices and 20,000 deals) by FACTOR",
    )
    parser.add_argument("--seed", type=int, default=7, help="seeds the generated data")
    arguments = parser.parse_args(argv)
    if not (math.isfinite(arguments.scale) and arguments.scale > 0):
        parser.error("--scale must be a positive number")
    scale = Scale.of(QUICK_SCALE if arguments.quick else arguments.scale)
    try:
        run(arguments.output, scale=scale, seed=arguments.seed)
    except CheckFailedError as error:
        print(f"\nThe demo stopped: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
