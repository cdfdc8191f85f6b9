"""Instructions per cycle of a round over PostgreSQL and loopback HTTP, with history and telemetry.

``bench/telemetry.py`` times the round of ``bench/round.py`` with history and telemetry on and
off, and a shared machine moves those times by more than the difference asked about (the 1.05 of
issue 15). The round is bound by one core (the interpreter lock; the fakes are served from the
same process), so its cost is this process's CPU, and the instructions it executes are a figure
no other job can move: ``valgrind --tool=callgrind`` counts them.

Run from the project root (about half an hour: valgrind runs Python about 50 times slower; it
needs the PostgreSQL server the tests use, ``INCSYNC_TEST_POSTGRES``)::

    python -m bench.round_instructions [VARIANT ...]

Each run builds the world of ``bench/round.py`` (half HubSpot portals, half QuickBooks companies,
20 records each, one loopback server per vendor), syncs all its 200 sources in full into a
:class:`~incsync.stores.postgres.PostgresStore` in a fresh schema ``bench_instructions_<random>``
(dropped at the end), freezes the garbage collector as ``bench/telemetry.py`` does, changes 2-3
records of every account and deletes one in every fourth, and then runs ONE incremental round of
:func:`incsync.scheduling.run_due` on 8 threads over the first 25 or over all 100 sources of each
vendor. The two runs differ only by the round's 150 extra cycles, so the difference of their
counts over 150 is the instructions of one cycle of the round (its HTTP requests, the fakes'
answers, the engine, the PostgreSQL client's work), without the start-up. The PostgreSQL server
is another process and is not counted; nor is it on the round's critical core.

Variants (:class:`~bench.telemetry.Variants` switches incsync's telemetry):

* ``nothing``: no telemetry (``configure(enabled=False)``) and a store keeping no history
  (``history_retention=NO_HISTORY``);
* ``not_installed``: the history kept (the default retention), no telemetry;
* ``on``: the history, and the SDK with a batch span processor and a metric reader with the
  SDK's default exemplar filter; the store observed by the ``incsync.sources`` gauge;
* ``on_large_fleet``: as ``on``, with the settings Observability recommends for a large fleet:
  exemplars ``always_off`` and one trace in ten (``ParentBased(TraceIdRatioBased(0.1))``).

The metric reader collects only when told: at 15 s a collection, a run slowed 50 times by
valgrind would collect 50 times as often per cycle as a real round. What a collection of the
gauge costs is counted apart (``--scrapes``): a third ``on`` run of the small round that
collects 5 times. Spans are flushed to the exporter (which counts and drops them) before the run
ends, so their export is counted. A profile already kept in ``--profiles`` is read, not run again.

The counts are not exact: threads run in another order from run to run, and some of their work
follows the clock, which valgrind slows about fifty times. So the pool opens its 8 connections at
the start (none is opened when a thread happens to wait), and the interpreter hands its lock over
every 0.25 s, as often per instruction as every 5 ms at full speed. With both, one run repeated
moved by 0.2% (without them, 0.5%), which over 150 cycles is still about 1.6% of a cycle: repeat
the counts before reading a difference of a few per cent.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench._round_timing import Tally
from bench._round_world import HubSpotWorld, QuickBooksWorld, World
from bench.core import CONNINFO, git, machine
from bench.round import INTERVAL, RECORDS, Factory, drop_schema, outcomes, source_key
from bench.telemetry import Variants
from bench.telemetry_instructions import callgrind_instructions
from incsync.engine import SyncEngine
from incsync.history import DEFAULT_HISTORY_RETENTION, NO_HISTORY
from incsync.results import Outcome
from incsync.scheduling import SourcePlan, run_due
from incsync.stores.postgres import PostgresStore
from incsync.timestamps import utc_now

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "round-instructions-results.json"
VARIANTS = ("nothing", "not_installed", "on", "on_large_fleet")
PER_VENDOR = 100  # accounts of each vendor in the world, every one synced in full first
FEW, MANY = 25, 100  # sources of each vendor in the counted round
WORKERS = 8
SCRAPES = 5
_SLOWDOWN = 50  # about how much slower Python runs under callgrind
_TOTALS = re.compile(r"^totals: (\d+)$", re.MULTILINE)


def run_round(variant: str, per_vendor: int, scrapes: int) -> None:
    """Sync the world in full, then run one counted round of ``per_vendor`` sources a vendor.

    Exits the process (status 1 when a source did not complete or a change was not applied).
    """
    # valgrind slows the clock about fifty times: hand the interpreter lock over as often per
    # instruction as a process running at full speed does every 5 ms.
    sys.setswitchinterval(0.005 * _SLOWDOWN)
    # Its SDK variants' readers collect only when the run tells them to.
    variants = Variants()
    worlds: list[World] = [
        HubSpotWorld(PER_VENDOR, RECORDS),
        QuickBooksWorld(PER_VENDOR, RECORDS),
    ]
    retention = NO_HISTORY if variant == "nothing" else DEFAULT_HISTORY_RETENTION
    schema = f"bench_instructions_{secrets.token_hex(4)}"
    problems: list[str] = []
    try:
        with ExitStack() as stack:
            served = {
                world.name: (world, stack.enter_context(world.router.serve())) for world in worlds
            }
            factory = Factory(served, Tally(), Tally())
            store = stack.enter_context(
                PostgresStore(
                    CONNINFO,
                    schema=schema,
                    min_size=WORKERS,  # opened whole: no run grows it at another moment
                    max_size=WORKERS,
                    history_retention=retention,
                )
            )
            store.migrate()
            engine = SyncEngine(store)
            plans = [
                SourcePlan(source_key(world, n), INTERVAL)
                for world in worlds
                for n in range(PER_VENDOR)
            ]
            variants.use("not_installed")
            first = run_due(engine, plans, factory, max_workers=WORKERS, per_account_limit=1)
            if outcomes(first) != {Outcome.COMPLETED.value: len(plans)}:
                problems.append(f"first sync: {outcomes(first)}")
            gc.collect()
            gc.freeze()  # as bench/telemetry.py: the fakes' records are not a worker's
            changes = sum(world.change(n) for world in worlds for n in range(per_vendor))
            for world in worlds:
                world.advance()
            counted = [
                SourcePlan(source_key(world, n), INTERVAL)
                for world in worlds
                for n in range(per_vendor)
            ]
            variants.observe(store)
            variants.use(variant)
            random.seed(15)  # the trace ids, so the sampled variant samples alike from run to run
            results = run_due(
                engine,
                counted,
                factory,
                max_workers=WORKERS,
                per_account_limit=1,
                now=utc_now() + INTERVAL + timedelta(minutes=1),
            )
            for _ in range(scrapes):
                variants.collect(variant)
            variants.flush(variant)
            if outcomes(results) != {Outcome.COMPLETED.value: len(counted)}:
                problems.append(f"round: {outcomes(results)}")
            applied = sum(result.applied for result in results)
            if applied != changes:
                problems.append(f"round applied {applied}, changed {changes}")
    finally:
        variants.observe(None)  # the store is closed: observe it no more
        variants.use("nothing")
        drop_schema(schema)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if problems else 0)  # the providers' shutdown is not part of a round


def count(variant: str, per_vendor: int, scrapes: int, profiles: Path | None) -> int:
    """Return the instructions callgrind counts for one run; keep its profile in ``profiles``.

    A complete profile already kept there is read instead of running again (its ``totals``).
    """
    arguments = ("--run", variant, str(per_vendor), str(scrapes))
    name = f"callgrind.out.{variant}.{per_vendor}.{scrapes}"
    if profiles is None:
        return callgrind_instructions("bench.round_instructions", *arguments)
    kept = profiles / name
    found = _TOTALS.search(kept.read_text(encoding="utf-8")) if kept.exists() else None
    if found is not None:
        return int(found.group(1))
    return callgrind_instructions("bench.round_instructions", *arguments, out_file=str(kept))


def main(argv: list[str] | None = None) -> int:
    """Count each variant's instructions per cycle; print the ratios and write the results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--run", nargs=3, metavar=("VARIANT", "PER_VENDOR", "SCRAPES"))
    parser.add_argument("variants", nargs="*", help=f"of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="runs under valgrind at once")
    parser.add_argument(
        "--profiles",
        type=Path,
        help="keep each run's callgrind profile in this directory, and reuse those found there",
    )
    parser.add_argument(
        "--scrapes",
        type=int,
        default=SCRAPES,
        help=f"gauge collections of the extra 'on' run (default {SCRAPES}; 0: no such run)",
    )
    args = parser.parse_args(argv)
    if args.run:
        run_round(args.run[0], int(args.run[1]), int(args.run[2]))
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    chosen = args.variants or VARIANTS
    cycles = 2 * (MANY - FEW)
    runs: list[tuple[str, int, int]] = [
        (variant, size, 0) for variant in chosen for size in (FEW, MANY)
    ]
    if "on" in chosen and args.scrapes:
        runs.append(("on", FEW, args.scrapes))
    # Each run is its own process under valgrind: threads only wait for them.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        found = dict(
            zip(
                runs,
                pool.map(lambda run: count(run[0], run[1], run[2], args.profiles), runs),
                strict=True,
            )
        )
    counts = {variant: (found[variant, FEW, 0], found[variant, MANY, 0]) for variant in chosen}
    per_cycle = {variant: (many - few) // cycles for variant, (few, many) in counts.items()}
    scrape = None
    if "on" in chosen and args.scrapes:
        scrape = (found["on", FEW, args.scrapes] - found["on", FEW, 0]) // args.scrapes
    base = per_cycle.get("nothing")
    for variant, each in per_cycle.items():
        ratio = "" if base is None else f", {each / base:.3f} of nothing"
        print(f"{variant:<16} {each:>12,} instructions per cycle{ratio}")
    if scrape is not None:
        sources = 2 * PER_VENDOR
        print(f"a collection of the sources gauge over {sources} sources: {scrape:,} instructions")
    document: dict[str, Any] = {
        "benchmark": "round_instructions",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "incsync_commit_full": git("rev-parse", "HEAD"),
        "sources_in_world": 2 * PER_VENDOR,
        "sources_in_round": {"few": 2 * FEW, "many": 2 * MANY},
        "workers": WORKERS,
        "instructions": {v: {"few": f, "many": m} for v, (f, m) in counts.items()},
        "instructions_per_cycle": per_cycle,
        "ratio_to_nothing": (
            None if base is None else {v: round(n / base, 4) for v, n in per_cycle.items()}
        ),
        "gauge_collection_instructions": scrape,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
