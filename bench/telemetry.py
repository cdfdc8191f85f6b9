"""What OpenTelemetry costs a scheduled round: telemetry on, off, and not installed, in one run.

Run ``python -m bench.telemetry`` from the project root (a few minutes with the default 1,000
sources; ``--sources 10000`` for the full fleet of ``bench/round.py``). It needs the PostgreSQL
server the tests use (``INCSYNC_BENCH_POSTGRES``) and works in a fresh schema
``bench_telemetry_<random>``, dropped at the end. Figures are printed and written to
``bench/telemetry-results.json``.

The world is ``bench/round.py``'s: half HubSpot portals, half QuickBooks companies, 20 records
each, served over loopback HTTP, synced into a :class:`~incsync.stores.postgres.PostgresStore`
on a pool of 8 threads by :func:`incsync.scheduling.run_due`. After an untimed first full sync,
each timed round updates 2-3 records of every account and runs one incremental cycle of every
source. The rounds come in sets of four, one per variant, in an order that rotates from set to
set (so a drift of the machine's load does not favour one variant):

* ``nothing``: as ``not_installed``, and through a store that keeps no cycle history
  (``history_retention=NO_HISTORY``): the round with both history and telemetry off;
* ``not_installed``: ``incsync.telemetry.configure(enabled=False)``, the very path taken where
  OpenTelemetry's API cannot be imported: a cycle only sets its log context (history kept, as in
  every variant below);
* ``off``: the API installed, no SDK configured: incsync calls the API's no-op tracer and meter;
* ``on``: the SDK's tracer provider with a batch span processor (whose exporter drops the spans
  after counting them) and a meter provider with a periodic reader every 15 s, the SDK's default
  exemplar filter, and the store observed by the sources-per-colour gauge
  (:func:`incsync.telemetry.observe_sources`): every span and metric is recorded, as in
  production, but nothing leaves the process.

The ratio of a variant is its round time over the ``not_installed`` round of the same set, and
over the ``nothing`` round (``on`` over ``nothing`` is history and telemetry together); the
median over the sets is reported, with the range, for wall time and for this process's CPU time
(the round is bound by one core: the GIL). A second, smaller part times cycles with no I/O at all
(in-memory store and connector, 5 pages of 20 records): there telemetry has nothing to hide
behind, so it is the worst case per cycle.

The fakes answer on loopback at once, so a cycle waits on nothing and telemetry's CPU has
nothing to hide behind: the worst case. ``--latency 0.1`` makes every request of a timed round
wait 100 ms before it is sent (the low end of what a vendor's round trip takes), as a worker
waits on a real vendor; the first sync stays at loopback speed. Those figures are written to
``bench/telemetry-results-latency.json``. Each round also reports the garbage collector's runs
and seconds per generation, so a variant that only allocates more shows as such.

The fake vendors hold every account's records in this process (hundreds of thousands of objects),
where a real worker holds none: each full collection of the garbage collector walks them, and
whatever allocates more (the SDK's spans) pays for it out of proportion. Before each timed round,
after that round's changes are made, they are frozen (``gc.freeze()``) unless ``--no-freeze`` is
given; the results say which. The changes of every round are new objects of the fakes, so a
freeze after the first sync alone let them pile up in the collector's oldest generation, round
after round, as did the fakes' logs of the requests they answered (cleared before each round:
nothing here reads them).
"""

from __future__ import annotations

import argparse
import gc
import json
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from bench._round_timing import Tally
from bench._round_world import HubSpotWorld, QuickBooksWorld, World
from bench.core import git, load_average, machine
from bench.round import CONNINFO, INTERVAL, RECORDS, Factory, drop_schema, outcomes, source_key
from incsync import telemetry
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.engine import SyncEngine
from incsync.history import NO_HISTORY
from incsync.protocols import StateStore
from incsync.results import Outcome
from incsync.scheduling import SourcePlan, run_due
from incsync.stores.postgres import PostgresStore
from incsync.testing import InMemoryStore
from incsync.timestamps import utc_now

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "telemetry-results.json"
LATENCY_RESULTS = HERE / "telemetry-results-latency.json"
UTC = timezone.utc
VARIANTS = ("not_installed", "off", "on")
# The round also runs with nothing on: telemetry as where it is not installed, and the store
# keeping no cycle history (what history and telemetry cost together), and with the SDK set as
# Observability recommends for a large fleet.
ROUND_VARIANTS = ("nothing", *VARIANTS, "on_large_fleet")


class CountingExporter(SpanExporter):
    """Drops the spans it is given, after counting them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Count the batch."""
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class DroppingMetricExporter(MetricExporter):
    """Drops what the periodic reader exports."""

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        """Drop the metrics."""
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Nothing is buffered."""
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to close."""


class CollectorTally:
    """Time the garbage collector spends, per generation, while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._began
            self.runs[generation] += 1

    def take(self) -> tuple[list[int], list[float]]:
        """Return the runs and seconds so far, and start again from zero."""
        found = (self.runs, [round(s, 3) for s in self.seconds])
        self.runs, self.seconds = [0, 0, 0], [0.0, 0.0, 0.0]
        return found


SDK_VARIANTS = ("on", "on_large_fleet")
"""The variants that record through OpenTelemetry's SDK."""


def sdk_providers(
    variant: str, exporter: SpanExporter, reader: MetricReader
) -> tuple[TracerProvider, MeterProvider]:
    """Return the SDK's providers of ``variant``, spans to ``exporter``, metrics to ``reader``.

    ``on`` is the SDK's defaults; ``on_large_fleet`` the settings Observability recommends for a
    large fleet: exemplars ``always_off`` and one trace in ten
    (``ParentBased(TraceIdRatioBased(0.1))``).
    """
    large_fleet = variant == "on_large_fleet"
    meter_provider = (
        MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
        if large_fleet
        else MeterProvider(metric_readers=[reader])
    )
    tracer_provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(0.1)) if large_fleet else None
    )
    # A queue long enough that no span is dropped: a dropped span would be work not done.
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1_000_000))
    return tracer_provider, meter_provider


class Variants:
    """Switches incsync's telemetry between the variants; owns the SDK's providers.

    Each round of an SDK variant gets providers of its own, shut down (their spans exported) when
    the next variant is chosen: a provider left running would go on collecting the
    ``incsync.sources`` gauge during other variants' rounds. With an SDK variant, the store given
    to :attr:`observed` is counted by that gauge, collected every ``export_interval_millis`` (15 s
    by default, a common Prometheus scrape interval; the periodic reader's default is 60 s), so
    its cost falls in those rounds; with the other variants no store is observed.
    """

    def __init__(self, export_interval_millis: int = 15_000) -> None:
        self.exporter = CountingExporter()
        self.observed: StateStore | None = None
        self.reader: PeriodicExportingMetricReader | None = None
        self._interval = export_interval_millis
        self._providers: tuple[TracerProvider, MeterProvider] | None = None
        self._stop_observing: Callable[[], None] | None = None

    def use(self, variant: str) -> None:
        """Make ``variant`` the one the next cycles report through."""
        if self._stop_observing is not None:
            self._stop_observing()
            self._stop_observing = None
        if variant in ("nothing", "not_installed"):
            telemetry.configure(enabled=False)
        else:
            telemetry.configure()  # the global providers: the API's no-op ones, nothing set
        if self._providers is not None:
            for provider in self._providers:
                provider.shutdown()
            self._providers, self.reader = None, None
        if variant in SDK_VARIANTS:
            self.reader = PeriodicExportingMetricReader(
                DroppingMetricExporter(), export_interval_millis=self._interval
            )
            self._providers = sdk_providers(variant, self.exporter, self.reader)
            if self.observed is not None:
                self._stop_observing = telemetry.observe_sources(self.observed)
            tracer_provider, meter_provider = self._providers
            telemetry.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def flush(self) -> None:
        """Export every span the variant in use has ended so far."""
        if self._providers is not None:
            self._providers[0].force_flush()

    def close(self) -> None:
        """Stop the SDK, its spans exported; leave incsync on the global providers."""
        self.use("off")


def ratios(
    times: dict[str, list[float]], base: str = "not_installed"
) -> dict[str, dict[str, float]]:
    """Each variant's time over ``base``'s in the same set: median, min and max."""
    found: dict[str, dict[str, float]] = {}
    for variant in times:
        each = [t / first for t, first in zip(times[variant], times[base], strict=True)]
        found[variant] = {
            "median": round(statistics.median(each), 3),
            "min": round(min(each), 3),
            "max": round(max(each), 3),
        }
    return found


def run_rounds(args: argparse.Namespace, variants: Variants, problems: list[str]) -> dict[str, Any]:
    """Build the world, sync it once, then time the rounds; return their figures."""
    sizes = {"hubspot": args.sources // 2, "quickbooks": args.sources - args.sources // 2}
    worlds: list[World] = [
        HubSpotWorld(sizes["hubspot"], RECORDS),
        QuickBooksWorld(sizes["quickbooks"], RECORDS),
    ]
    schema = f"bench_telemetry_{secrets.token_hex(4)}"
    chosen: tuple[str, ...] = args.round_variants
    wall: dict[str, list[float]] = {variant: [] for variant in chosen}
    cpu: dict[str, list[float]] = {variant: [] for variant in chosen}
    collector: dict[str, list[Any]] = {variant: [] for variant in chosen}
    tally = CollectorTally()
    try:
        with ExitStack() as stack:
            served = {
                world.name: (world, stack.enter_context(world.router.serve())) for world in worlds
            }
            # The first sync runs at loopback speed; the timed rounds wait ``--latency`` seconds
            # before each request, as a worker waits on a vendor's round trip.
            latency = [0.0]
            factory = Factory(served, Tally(), Tally(), lambda: latency[0])
            store = stack.enter_context(
                PostgresStore(CONNINFO, schema=schema, min_size=2, max_size=args.workers)
            )
            store.migrate()
            engine = SyncEngine(store)
            # The same schema through a store that writes no history entry.
            quiet_store = stack.enter_context(
                PostgresStore(
                    CONNINFO,
                    schema=schema,
                    min_size=2,
                    max_size=args.workers,
                    history_retention=NO_HISTORY,
                )
            )
            variants.observed = store
            engines = dict.fromkeys(chosen, engine)
            engines["nothing"] = SyncEngine(quiet_store)
            plans = [
                SourcePlan(source_key(world, n), INTERVAL)
                for world in worlds
                for n in range(sizes[world.name])
            ]
            variants.use("not_installed")
            began = time.perf_counter()
            first = run_due(engine, plans, factory, max_workers=args.workers, per_account_limit=1)
            print(f"first full sync: {outcomes(first)} in {time.perf_counter() - began:.1f} s")
            moment = utc_now()
            latency[0] = args.latency
            for number in range(args.sets):
                turn = number % len(chosen)
                for variant in chosen[turn:] + chosen[:turn]:
                    changes = sum(
                        world.change(n, deletes=False)
                        for world in worlds
                        for n in range(sizes[world.name])
                    )
                    for world in worlds:
                        world.advance()
                        for account in world.router.accounts:
                            # Nothing reads the fakes' request logs here, and no worker holds one.
                            account.requests.clear()
                    if args.freeze:
                        # The fake vendors' records (and the changes just made) live in this
                        # process only because the bench serves them here: out of the
                        # collector's reach, as they would be in another process.
                        gc.collect()
                        gc.freeze()
                    moment += INTERVAL + timedelta(minutes=1)  # every hourly slot has passed
                    variants.use(variant)
                    gc.callbacks.append(tally)
                    cpu_began, round_began = time.process_time(), time.perf_counter()
                    results = run_due(
                        engines[variant],
                        plans,
                        factory,
                        max_workers=args.workers,
                        per_account_limit=1,
                        now=moment,
                    )
                    seconds = time.perf_counter() - round_began
                    cpu_seconds = time.process_time() - cpu_began
                    gc.callbacks.remove(tally)
                    runs, collecting = tally.take()
                    collector[variant].append({"runs": runs, "seconds": collecting})
                    wall[variant].append(seconds)
                    cpu[variant].append(cpu_seconds)
                    applied = sum(result.applied for result in results)
                    counts = outcomes(results)
                    print(
                        f"set {number + 1} {variant:<14} {seconds:6.2f} s wall "
                        f"{cpu_seconds:6.2f} s CPU  {counts}, {applied:,} applied, "
                        f"collector runs {runs} taking {collecting} s"
                    )
                    if counts != {Outcome.COMPLETED.value: args.sources}:
                        problems.append(f"{variant}: not every source completed: {counts}")
                    if applied != changes:
                        problems.append(f"{variant}: applied {applied}, changed {changes}")
    finally:
        variants.use("not_installed")  # the store is closed: observe it no more
        variants.observed = None
        drop_schema(schema)
    return {
        "sources": sizes,
        "records_per_source": RECORDS,
        "workers": args.workers,
        "sets": args.sets,
        "latency_seconds_per_request": args.latency,
        "gc_frozen_before_each_round": args.freeze,
        "wall_seconds": {v: [round(t, 3) for t in wall[v]] for v in chosen},
        "cpu_seconds": {v: [round(t, 3) for t in cpu[v]] for v in chosen},
        "garbage_collector_per_generation": collector,
        "wall_ratio_to_not_installed": ratios(wall),
        "cpu_ratio_to_not_installed": ratios(cpu),
        "wall_ratio_to_nothing": ratios(wall, "nothing"),
        "cpu_ratio_to_nothing": ratios(cpu, "nothing"),
    }


def time_cycles(variants: Variants, cycles: int, sets: int) -> dict[str, Any]:
    """Time in-memory cycles with no I/O, per variant; return microseconds per cycle."""
    source = InMemorySource()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number in range(100):
        source.put({"id": f"r{number:03d}", "updated_at": start + timedelta(seconds=number)})
    per_cycle: dict[str, list[float]] = {variant: [] for variant in VARIANTS}

    def run(variant: str) -> float:
        variants.use(variant)
        engine = SyncEngine(InMemoryStore())
        began = time.process_time()
        for number in range(cycles):
            engine.run_cycle(f"s{number % 50}", InMemoryConnector(source, page_size=20))
        return (time.process_time() - began) / cycles * 1e6

    for number in range(sets):
        order = VARIANTS[number % 3 :] + VARIANTS[: number % 3]
        for variant in order:
            per_cycle[variant].append(run(variant))
    medians = {variant: round(statistics.median(per_cycle[variant]), 1) for variant in VARIANTS}
    print(f"in-memory cycles (5 pages of 20 records), CPU microseconds per cycle: {medians}")
    return {
        "cycles_per_run": cycles,
        "cpu_microseconds_per_cycle": {v: [round(t, 1) for t in per_cycle[v]] for v in VARIANTS},
        "cpu_ratio_to_not_installed": ratios(per_cycle),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 1 when a check failed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sources", type=int, default=1_000, help="sources in the round")
    parser.add_argument("--workers", type=int, default=8, help="threads of the round")
    parser.add_argument("--sets", type=int, default=3, help="sets of four rounds, one a variant")
    parser.add_argument("--cycles", type=int, default=2_000, help="in-memory cycles per run")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds each request of a timed round waits, as on a vendor (default: none)",
    )
    parser.add_argument(
        "--no-freeze",
        dest="freeze",
        action="store_false",
        help="leave the fake vendors' objects to the garbage collector (see the docstring)",
    )
    parser.add_argument(
        "--round-variants",
        type=lambda text: tuple(text.split(",")),
        default=ROUND_VARIANTS,
        help=f"the round's variants, comma-separated, 'nothing' and 'not_installed' among them "
        f"(default: {','.join(ROUND_VARIANTS)})",
    )
    args = parser.parse_args(argv)
    unknown = set(args.round_variants) - set(ROUND_VARIANTS)
    if unknown or not {"nothing", "not_installed"} <= set(args.round_variants):
        parser.error(
            f"--round-variants: choose from {', '.join(ROUND_VARIANTS)}, with nothing "
            "and not_installed"
        )
    info = machine()
    print(f"machine: {info['cpu_model']}, {info['cpu_count']} cores, Python {info['python']}")
    load_start = load_average()
    print(f"load average at start: {load_start}")
    variants = Variants()
    problems: list[str] = []
    try:
        rounds = run_rounds(args, variants, problems)
        cycles = time_cycles(variants, args.cycles, args.sets)
    finally:
        variants.close()
    spans = variants.exporter.spans

    def show(found: dict[str, dict[str, float]]) -> str:
        return ", ".join(
            f"{v} {found[v]['median']:.3f} ({found[v]['min']:.3f}-{found[v]['max']:.3f})"
            for v in found
            if v not in ("nothing", "not_installed")
        )

    print(f"round, wall time ratio to not installed: {show(rounds['wall_ratio_to_not_installed'])}")
    print(f"round, CPU time ratio to not installed:  {show(rounds['cpu_ratio_to_not_installed'])}")
    for kind in ("wall", "cpu"):
        print(f"round, {kind} time ratio to both off:  {show(rounds[f'{kind}_ratio_to_nothing'])}")
    print(f"in-memory cycles, CPU ratio:             {show(cycles['cpu_ratio_to_not_installed'])}")
    print(f"spans exported by the 'on' variant: {spans:,}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    document = {
        "benchmark": "telemetry",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "incsync_commit_full": git("rev-parse", "HEAD"),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "round": rounds,
        "in_memory_cycles": cycles,
        "spans_exported_on": spans,
        "checks": {"problems": problems[:20], "passed": not problems},
    }
    results = LATENCY_RESULTS if args.latency else RESULTS
    results.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"written to {results.relative_to(HERE.parent)}")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
