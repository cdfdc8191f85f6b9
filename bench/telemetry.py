"""What OpenTelemetry costs a scheduled round: telemetry on, off, and not installed, in one run.

Run ``python -m bench.telemetry`` from the project root (a few minutes with the default 1,000
sources; ``--sources 10000`` for the full fleet of ``bench/round.py``). It needs the PostgreSQL
server the tests use (``INCSYNC_TEST_POSTGRES``) and works in a fresh schema
``bench_telemetry_<random>``, dropped at the end. Figures are printed and written to
``bench/telemetry-results.json`` (``--output PATH`` elsewhere).

The world is ``bench/round.py``'s: half HubSpot portals, half QuickBooks companies, 20 records
each, served over loopback HTTP, synced into a :class:`~incsync.stores.postgres.PostgresStore`
on a pool of 8 threads by :func:`incsync.scheduling.run_due`. After an untimed first full sync,
each timed round updates 2-3 records of every account and runs one incremental cycle of every
source, in one of these variants:

* ``nothing``: as ``not_installed``, and through a store that keeps no cycle history
  (``history_retention=NO_HISTORY``): the round with both history and telemetry off;
* ``not_installed``: ``incsync.telemetry.configure(enabled=False)``, the very path taken where
  OpenTelemetry's API cannot be imported: a cycle only sets its log context (history kept, as in
  every variant below);
* ``off``: the API installed, no SDK configured: incsync calls the API's no-op tracer and meter;
* ``on``: the SDK's tracer provider with a batch span processor (whose exporter drops the spans
  after counting them) and a meter provider whose metrics are collected every 15 s of the
  variant's time (a common Prometheus scrape interval), with the SDK's default exemplar filter
  and the store observed by the sources-per-colour gauge
  (:func:`incsync.telemetry.observe_sources`, which lists the states again once a minute of the
  variant's time): every span and metric is recorded, as in production, but nothing leaves the
  process;
* ``on_large_fleet``: as ``on``, with the settings Observability recommends for a large fleet;
* ``on_sampled``: as ``on``, with one trace in ten sampled and nothing else changed (exemplars
  as the SDK's default): the large-fleet settings' sampling alone;
* ``on_uncollected`` and ``on_metrics_only`` take ``on`` apart: its spans and metric updates
  with the metrics never collected (no gauge, no export), and its metric updates and
  collections without spans (the API's no-op tracer).

The last three run only when ``--round-variants`` names them.

**Interleaved.** A set holds one round of every variant, and the rounds of a set are interleaved:
the fleet is dealt into ``--chunks`` slices (20 by default: 500 sources each at 10,000), and each
slice is synced once in every variant, one variant after the other, before the next slice, in an
order that rotates from slice to slice. A variant's round is the sum of its slices. So the
variants of a slice run within the same half-minute, and a drift of the machine's speed (on a
shared VM a whole round moves by up to a quarter from one minute to the next) falls on all of
them alike, where rounds run one after the other would each meet a different machine.
``--chunks 1`` runs each round whole, as this benchmark did before. Each SDK variant keeps its
providers for the whole run; after each of its slices, its ended spans are exported and, when 15
s of its rounds have passed since the last, its metrics collected (the gauge's query included),
inside the slice's time: so what the SDK does is counted in that variant's rounds, as often as
in production, and nowhere else.

The ratio of a variant is its round time over the ``not_installed`` round of the same set, and
over the ``nothing`` round (``on`` over ``nothing`` is history and telemetry together); the
median over the sets is reported, with the range, for wall time and for this process's CPU time
(the round is bound by one core: the GIL), and the same ratio over every set's rounds added up.
Each slice's own ratio to ``nothing`` is reported too (median and quartiles), to show the spread
that is left. A second, smaller part times cycles with no I/O at all
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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NoOpTracerProvider

from bench._round_timing import Tally
from bench._round_world import HubSpotWorld, QuickBooksWorld, World
from bench.core import CONNINFO, git, load_average, machine
from bench.round import INTERVAL, RECORDS, Factory, drop_schema, outcomes, source_key
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
DEFAULT_ROUND_VARIANTS = ("nothing", *VARIANTS, "on_large_fleet")
# Three more take the SDK's cost apart: the large-fleet settings' sampling alone, "on" with its
# metrics never collected (no gauge, no export), and its metrics without spans.
ROUND_VARIANTS = (*DEFAULT_ROUND_VARIANTS, "on_sampled", "on_uncollected", "on_metrics_only")


class CountingExporter(SpanExporter):
    """Drops the spans it is given, after counting them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Count the batch."""
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class DroppingReader(MetricReader):
    """Collects when told to (:meth:`collect`), and drops what it collected."""

    def _receive_metrics(
        self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        """Drop the metrics."""

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


SDK_VARIANTS = ("on", "on_large_fleet", "on_sampled", "on_uncollected", "on_metrics_only")
"""The variants that record through OpenTelemetry's SDK."""


LARGE_FLEET_SAMPLED = 0.1
"""The share of traces the large-fleet settings sample (``ParentBased(TraceIdRatioBased)``)."""


def sdk_providers(
    exporter: SpanExporter,
    reader: MetricReader,
    *,
    exemplars: bool = True,
    sampled: float | None = None,
) -> tuple[TracerProvider, MeterProvider]:
    """Return the SDK's providers, spans to ``exporter``, metrics to ``reader``.

    The SDK's defaults, but for ``exemplars=False`` (the exemplar filter ``always_off``) and
    ``sampled`` (that share of traces, ``ParentBased(TraceIdRatioBased(sampled))``; ``None``:
    every one). ``on``, ``on_uncollected`` and ``on_metrics_only`` use the defaults (the last
    leaves its tracer provider unused, see :class:`Variants`); ``on_large_fleet`` the settings
    Observability recommends for a large fleet: exemplars off and one trace in ten;
    ``on_sampled`` one trace in ten alone.
    """
    meter_provider = (
        MeterProvider(metric_readers=[reader])
        if exemplars
        else MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
    )
    tracer_provider = TracerProvider(
        sampler=None if sampled is None else ParentBased(TraceIdRatioBased(sampled))
    )
    # A queue long enough that no span is dropped: a dropped span would be work not done.
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1_000_000))
    return tracer_provider, meter_provider


EXPORT_INTERVAL_SECONDS = 15.0
"""How often an SDK variant's metrics are collected: every 15 s of its rounds' time.

A common Prometheus scrape interval; the SDK's periodic reader defaults to 60 s.
"""


class _Sdk:
    """One SDK variant's providers, kept for the run, its rounds' time and its collections."""

    def __init__(self, variant: str, exporter: SpanExporter) -> None:
        self.reader = DroppingReader()
        self.tracer_provider, self.meter_provider = sdk_providers(
            exporter,
            self.reader,
            exemplars=variant != "on_large_fleet",
            sampled=LARGE_FLEET_SAMPLED if variant in ("on_large_fleet", "on_sampled") else None,
        )
        self.rounds_seconds = 0.0
        self.collections = 0


class Variants:
    """Switches incsync's telemetry between the variants; owns the SDK variants' providers.

    Each SDK variant gets its providers once and keeps them for the run, so switching variants
    slice by slice costs nothing in the rounds. What the SDK does on its own schedule is done
    here in the variant's time instead, by :meth:`settle` at the end of each of its slices: its
    ended spans are exported (its batch processor's thread, left alone, would export them during
    another variant's slice), and its metrics are collected once :data:`EXPORT_INTERVAL_SECONDS`
    of its rounds have passed since the last collection. Collecting runs the
    ``incsync.sources`` gauge over the store given to :meth:`observe`.
    """

    def __init__(self) -> None:
        self.exporter = CountingExporter()
        self._sdk: dict[str, _Sdk] = {}
        self._stop_observing: Callable[[], None] | None = None
        self._current = "not_installed"

    def observe(self, store: StateStore | None) -> None:
        """Count ``store``'s sources in the SDK variants' gauge (``None``: no store).

        The gauge keeps a count for its default minute (``recount_every``) of the collecting
        variant's own rounds, not of the run's: in production the variant would run alone, and
        on the run's clock a count of one variant would be reused by none of its next collections.
        """
        if self._stop_observing is not None:
            self._stop_observing()
            self._stop_observing = None
        if store is not None:
            self._stop_observing = telemetry.observe_sources(store, timer=self._rounds_time)

    def _rounds_time(self) -> float:
        """Seconds of the variant in use's rounds so far, as :meth:`settle` added them up."""
        sdk = self._sdk.get(self._current)
        return 0.0 if sdk is None else sdk.rounds_seconds

    def use(self, variant: str) -> None:
        """Make ``variant`` the one the next cycles report through."""
        self._current = variant
        if variant in ("nothing", "not_installed"):
            telemetry.configure(enabled=False)
        elif variant in SDK_VARIANTS:
            sdk = self._sdk.get(variant)
            if sdk is None:
                sdk = self._sdk[variant] = _Sdk(variant, self.exporter)
            # The API's no-op tracer: the metric updates alone.
            tracer = NoOpTracerProvider() if variant == "on_metrics_only" else sdk.tracer_provider
            telemetry.configure(tracer_provider=tracer, meter_provider=sdk.meter_provider)
        else:
            telemetry.configure()  # the global providers: the API's no-op ones, nothing set

    def settle(self, variant: str, seconds: float) -> None:
        """Do what ``variant``'s SDK does on its own after ``seconds`` more of its rounds."""
        sdk = self._sdk.get(variant)
        if sdk is None:
            return
        self.flush(variant)
        sdk.rounds_seconds += seconds
        due = (sdk.collections + 1) * EXPORT_INTERVAL_SECONDS
        if variant != "on_uncollected" and sdk.rounds_seconds >= due:
            self.collect(variant)
            sdk.collections += 1

    def flush(self, variant: str) -> None:
        """Export ``variant``'s ended spans now (nothing for a variant without the SDK)."""
        sdk = self._sdk.get(variant)
        if sdk is not None:
            sdk.tracer_provider.force_flush()

    def collect(self, variant: str) -> None:
        """Collect ``variant``'s metrics now, the gauge's query included (as a scrape does)."""
        sdk = self._sdk.get(variant)
        if sdk is not None:
            sdk.reader.collect()

    def close(self) -> None:
        """Stop the SDKs, their spans exported; leave incsync on the global providers."""
        self.observe(None)
        telemetry.configure()
        for sdk in self._sdk.values():
            sdk.tracer_provider.shutdown()
            sdk.meter_provider.shutdown()
        self._sdk.clear()


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


def quartiles(values: Sequence[float]) -> dict[str, float]:
    """The median of ``values`` with their first and third quartiles, min and max."""
    low, median, high = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {
        "median": round(median, 3),
        "q1": round(low, 3),
        "q3": round(high, 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


@dataclass(frozen=True)
class Slice:
    """Some sources of the fleet: each as its world, its number there, and its plan."""

    sources: tuple[tuple[World, int, SourcePlan], ...]

    def change(self) -> int:
        """Make a round's changes at these sources' accounts; return how many records changed."""
        return sum(world.change(n, deletes=False) for world, n, _ in self.sources)

    @property
    def plans(self) -> list[SourcePlan]:
        """The plans of these sources, for :func:`~incsync.scheduling.run_due`."""
        return [plan for _, _, plan in self.sources]


def deal(sources: Sequence[tuple[World, int, SourcePlan]], count: int) -> list[Slice]:
    """Deal ``sources`` into ``count`` slices of (nearly) one size, every vendor in each."""
    return [Slice(tuple(sources[start::count])) for start in range(count)]


def run_rounds(args: argparse.Namespace, variants: Variants, problems: list[str]) -> dict[str, Any]:
    """Build the world, sync it once, then time the rounds; return their figures."""
    sizes = {"hubspot": args.sources // 2, "quickbooks": args.sources - args.sources // 2}
    worlds: list[World] = [
        HubSpotWorld(sizes["hubspot"], RECORDS),
        QuickBooksWorld(sizes["quickbooks"], RECORDS),
    ]
    schema = f"bench_telemetry_{secrets.token_hex(4)}"
    chosen: tuple[str, ...] = args.round_variants
    # Per variant, per set: the round's wall and CPU seconds and its collector runs and seconds,
    # each the sum over the round's slices.
    wall = {variant: [0.0] * args.sets for variant in chosen}
    cpu = {variant: [0.0] * args.sets for variant in chosen}
    collector: dict[str, list[Any]] = {
        variant: [{"runs": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]} for _ in range(args.sets)]
        for variant in chosen
    }
    slice_ratios: dict[str, list[float]] = {variant: [] for variant in chosen}
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
            variants.observe(store)
            engines = dict.fromkeys(chosen, engine)
            engines["nothing"] = SyncEngine(quiet_store)
            sources = [
                (world, n, SourcePlan(source_key(world, n), INTERVAL))
                for world in worlds
                for n in range(sizes[world.name])
            ]
            slices = deal(sources, args.chunks)
            variants.use("not_installed")
            began = time.perf_counter()
            first = run_due(
                engine,
                [plan for _, _, plan in sources],
                factory,
                max_workers=args.workers,
                per_account_limit=1,
            )
            print(f"first full sync: {outcomes(first)} in {time.perf_counter() - began:.1f} s")
            moment = utc_now()
            latency[0] = args.latency
            for number in range(args.sets):
                for index, part in enumerate(slices):
                    turn = (number * len(slices) + index) % len(chosen)
                    slice_wall: dict[str, float] = {}
                    for variant in chosen[turn:] + chosen[:turn]:
                        changes = part.change()
                        for world in worlds:
                            world.advance()
                            for account in world.router.accounts:
                                # Nothing reads the fakes' request logs here, and no worker
                                # holds one.
                                account.requests.clear()
                        if args.freeze:
                            # The fake vendors' records (and the changes just made) live in
                            # this process only because the bench serves them here: out of the
                            # collector's reach, as they would be in another process.
                            gc.collect()
                            gc.freeze()
                        moment += INTERVAL + timedelta(minutes=1)  # every hourly slot passed
                        variants.use(variant)
                        gc.callbacks.append(tally)
                        cpu_began, round_began = time.process_time(), time.perf_counter()
                        results = run_due(
                            engines[variant],
                            part.plans,
                            factory,
                            max_workers=args.workers,
                            per_account_limit=1,
                            now=moment,
                        )
                        variants.settle(variant, time.perf_counter() - round_began)
                        seconds = time.perf_counter() - round_began
                        cpu_seconds = time.process_time() - cpu_began
                        gc.callbacks.remove(tally)
                        runs, collecting = tally.take()
                        kept = collector[variant][number]
                        kept["runs"] = [a + b for a, b in zip(kept["runs"], runs, strict=True)]
                        kept["seconds"] = [
                            round(a + b, 3)
                            for a, b in zip(kept["seconds"], collecting, strict=True)
                        ]
                        slice_wall[variant] = seconds
                        wall[variant][number] += seconds
                        cpu[variant][number] += cpu_seconds
                        applied = sum(result.applied for result in results)
                        counts = outcomes(results)
                        if counts != {Outcome.COMPLETED.value: len(part.plans)}:
                            problems.append(f"{variant}: not every source completed: {counts}")
                        if applied != changes:
                            problems.append(f"{variant}: applied {applied}, changed {changes}")
                    for variant in chosen:
                        slice_ratios[variant].append(slice_wall[variant] / slice_wall["nothing"])
                    print(
                        f"set {number + 1} slice {index + 1:>2}/{len(slices)}: "
                        + "  ".join(f"{v} {slice_wall[v]:5.2f}" for v in chosen)
                        + " s",
                        flush=True,
                    )
                for variant in chosen:
                    runs = collector[variant][number]["runs"]
                    print(
                        f"set {number + 1} {variant:<14} {wall[variant][number]:6.2f} s wall "
                        f"{cpu[variant][number]:6.2f} s CPU, collector runs {runs}"
                    )
    finally:
        variants.observe(None)  # the store is closed: observe it no more
        variants.use("not_installed")
        drop_schema(schema)

    def pooled(times: dict[str, list[float]]) -> dict[str, float]:
        return {v: round(sum(times[v]) / sum(times["nothing"]), 3) for v in chosen}

    return {
        "sources": sizes,
        "records_per_source": RECORDS,
        "workers": args.workers,
        "sets": args.sets,
        "slices_per_round": len(slices),
        "latency_seconds_per_request": args.latency,
        "gc_frozen_before_each_round": args.freeze,
        "wall_seconds": {v: [round(t, 3) for t in wall[v]] for v in chosen},
        "cpu_seconds": {v: [round(t, 3) for t in cpu[v]] for v in chosen},
        "garbage_collector_per_generation": collector,
        "wall_ratio_to_not_installed": ratios(wall),
        "cpu_ratio_to_not_installed": ratios(cpu),
        "wall_ratio_to_nothing": ratios(wall, "nothing"),
        "cpu_ratio_to_nothing": ratios(cpu, "nothing"),
        "wall_ratio_to_nothing_all_sets": pooled(wall),
        "cpu_ratio_to_nothing_all_sets": pooled(cpu),
        "slice_wall_ratio_to_nothing": {v: quartiles(slice_ratios[v]) for v in chosen},
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
        variants.settle(variant, 0.0)  # its spans exported in its own time
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
    parser.add_argument("--sets", type=int, default=3, help="sets of rounds, one a variant")
    parser.add_argument(
        "--chunks",
        type=int,
        default=20,
        help="slices a round is dealt into, each run in every variant in turn (1: whole rounds)",
    )
    parser.add_argument("--cycles", type=int, default=2_000, help="in-memory cycles per run")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the figures (default {RESULTS.name}, with --latency "
        f"{LATENCY_RESULTS.name})",
    )
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
        default=DEFAULT_ROUND_VARIANTS,
        help=f"the round's variants, comma-separated, 'nothing' and 'not_installed' among them: "
        f"{', '.join(ROUND_VARIANTS)} (default: {','.join(DEFAULT_ROUND_VARIANTS)})",
    )
    args = parser.parse_args(argv)
    unknown = set(args.round_variants) - set(ROUND_VARIANTS)
    if unknown or not {"nothing", "not_installed"} <= set(args.round_variants):
        parser.error(
            f"--round-variants: choose from {', '.join(ROUND_VARIANTS)}, with nothing "
            "and not_installed"
        )
    if not 1 <= args.chunks <= args.sources:
        parser.error(f"--chunks: from 1 to the number of sources ({args.sources})")
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

    pooled = ", ".join(
        f"{v} {r:.3f}"
        for v, r in rounds["wall_ratio_to_nothing_all_sets"].items()
        if v != "nothing"
    )
    print(f"round, wall time over every set, ratio to both off: {pooled}")
    slices = ", ".join(
        f"{v} {q['median']:.3f} ({q['q1']:.3f}-{q['q3']:.3f})"
        for v, q in rounds["slice_wall_ratio_to_nothing"].items()
        if v != "nothing"
    )
    print(f"slices, wall time ratio to both off, median (quartiles): {slices}")
    print(f"round, wall time ratio to not installed: {show(rounds['wall_ratio_to_not_installed'])}")
    print(f"round, CPU time ratio to not installed:  {show(rounds['cpu_ratio_to_not_installed'])}")
    for kind in ("wall", "cpu"):
        print(f"round, {kind} time ratio to both off:  {show(rounds[f'{kind}_ratio_to_nothing'])}")
    print(f"in-memory cycles, CPU ratio:             {show(cycles['cpu_ratio_to_not_installed'])}")
    print(f"spans exported by the SDK variants: {spans:,}")
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
        "spans_exported_by_sdk_variants": spans,
        "checks": {"problems": problems[:20], "passed": not problems},
    }
    results = args.output or (LATENCY_RESULTS if args.latency else RESULTS)
    results.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"written to {results}")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
