"""Instructions per cycle of telemetry, counted by valgrind: a figure a shared machine cannot move.

The rounds of ``bench/telemetry.py`` are timed, so another job on the machine moves them by 10-30%
from round to round, more than a change to incsync's telemetry path can. Counting instructions
(``valgrind --tool=callgrind``) gives the same count for the same work whatever else runs, so a
change of a few per cent shows.

Run from the project root (a few minutes; valgrind runs Python about 50 times slower)::

    python -m bench.telemetry_instructions

For each variant it runs this module twice under callgrind, with 50 and with 250 in-memory cycles
(``InMemoryStore``, ``InMemoryConnector`` over 100 records in pages of 20, 50 sources in turn, so
the timed cycles are quiet incremental ones of one page), after the same 60 untimed cycles; the
difference over 200 is the instructions of one cycle, without the start-up. Variants:
``not_installed`` and ``on`` as in ``bench/telemetry.py`` (its
:func:`~bench.telemetry.sdk_providers`: the SDK with a batch span processor and a metric reader
that collects only when told, which these runs never do); ``on_no_exemplars``: the same with the
SDK's exemplar filter ``always_off``; ``on_sampled``: the same with one trace in ten sampled
(``ParentBased(TraceIdRatioBased(0.1))``). Spans are handed to the batch processor's thread, whose
export (a count) is in the figure; the threads' interleaving moves a count by about 1%.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from bench.telemetry import LARGE_FLEET_SAMPLED, CountingExporter, DroppingReader, sdk_providers
from incsync import telemetry
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.engine import SyncEngine
from incsync.testing import InMemoryStore

__all__ = ["callgrind_instructions", "main"]

VARIANTS = ("not_installed", "on", "on_no_exemplars", "on_sampled")
FEW, MANY = 50, 250
_COLLECTED = re.compile(r"Collected : (\d+)")


def run_cycles(variant: str, cycles: int) -> None:
    """Run ``cycles`` quiet in-memory cycles with ``variant``'s telemetry (under valgrind)."""
    if variant == "not_installed":
        telemetry.configure(enabled=False)
    else:
        tracer_provider, meter_provider = sdk_providers(
            CountingExporter(),
            DroppingReader(),
            exemplars=variant != "on_no_exemplars",
            sampled=LARGE_FLEET_SAMPLED if variant == "on_sampled" else None,
        )
        telemetry.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)
    source = InMemorySource()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for number in range(100):
        source.put({"id": f"r{number:03d}", "updated_at": start + timedelta(seconds=number)})
    engine = SyncEngine(InMemoryStore())
    for number in range(60 + cycles):
        engine.run_cycle(f"s{number % 50}", InMemoryConnector(source, page_size=20))
    sys.stdout.flush()
    os._exit(0)  # the providers' shutdown is not part of a cycle


def callgrind_instructions(module: str, *arguments: str, out_file: str = "/dev/null") -> int:
    """Return the instructions callgrind counts for ``python -m module arguments``.

    Args:
        module: The module to run (its ``--run`` mode does the counted work).
        arguments: Its arguments.
        out_file: Where callgrind writes its profile (for ``callgrind_annotate``); none kept by
            default.

    Raises:
        SystemExit: The run failed, or callgrind printed no count.
    """
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        "-m",
        module,
        *arguments,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(completed.stderr)
    if completed.returncode != 0 or found is None:
        raise SystemExit(
            f"{module} {' '.join(arguments)} failed under callgrind:\n{completed.stderr[-2000:]}"
        )
    return int(found.group(1))


def instructions(variant: str, cycles: int) -> int:
    """Return the instructions callgrind counts for a run of ``cycles``."""
    return callgrind_instructions("bench.telemetry_instructions", "--run", variant, str(cycles))


def main(argv: list[str] | None = None) -> int:
    """Print the instructions per cycle of each variant, and each over ``not_installed``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--run", nargs=2, metavar=("VARIANT", "CYCLES"), help=argparse.SUPPRESS)
    parser.add_argument("variants", nargs="*", help=f"of {', '.join(VARIANTS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    if args.run:
        run_cycles(args.run[0], int(args.run[1]))
    per_cycle = {
        variant: (instructions(variant, MANY) - instructions(variant, FEW)) // (MANY - FEW)
        for variant in args.variants or VARIANTS
    }
    base = per_cycle.get("not_installed")
    for variant, count in per_cycle.items():
        added = "" if base is None else f", {count - base:+,} over not_installed"
        print(f"{variant:<16} {count:>10,} instructions per cycle{added}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
