"""Benchmark of timestamp parsing: the per-record cost of each vendor encoding.

Run ``python -m bench.timestamps`` from the project root (``--quick`` for a smoke run). Each
encoding is parsed from a list of distinct values, as a connector does once per record, and its
cost is given per record and as a ratio to a bare ``datetime.fromisoformat`` over ISO text in the
same process, so the figures compare across machines. Every parser is first checked to return the
same instants as the baseline, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from dateutil.parser import isoparse

from incsync.timestamps import (
    parse_dotnet_date,
    parse_epoch_millis,
    parse_epoch_seconds,
    parse_timestamp,
    to_micros,
)

UTC = timezone.utc
START = datetime(2024, 1, 1, tzinfo=UTC)
PACIFIC = timezone(timedelta(hours=-7))
RECORDS = 200_000
ROUNDS = 7


def instants(count: int) -> list[datetime]:
    """Distinct whole-millisecond instants spread over about a year."""
    step = timedelta(milliseconds=157_679)  # irregular, so no two values share a prefix pattern
    return [START + n * step for n in range(count)]


def _millis(value: datetime) -> int:
    return to_micros(value) // 1000


def _iso_z(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# name, how the vendor writes an instant, how incsync parses it, whether only whole seconds travel
Case = tuple[str, Callable[[datetime], object], Callable[[object], datetime], bool]
CASES: list[Case] = [
    ("ISO Z, ms (HubSpot)", _iso_z, parse_timestamp, False),
    ("ISO +0000, ms (Salesforce)", lambda v: _iso_z(v)[:-1] + "+0000", parse_timestamp, False),
    (
        "ISO local offset (QuickBooks)",
        lambda v: v.astimezone(PACIFIC).replace(microsecond=0).isoformat(),
        parse_timestamp,
        True,
    ),
    (
        "zone-less UTC, assume_utc (Pipedrive v1)",
        lambda v: v.replace(tzinfo=None, microsecond=0).isoformat(sep=" "),
        lambda value: parse_timestamp(value, assume_utc=True),
        True,
    ),
    ("epoch seconds int (Stripe)", lambda v: _millis(v) // 1000, parse_epoch_seconds, True),
    ("epoch ms int", _millis, parse_epoch_millis, False),
    ("epoch ms text (HubSpot filters)", lambda v: str(_millis(v)), parse_epoch_millis, False),
    ("/Date(ms+0000)/ (Xero)", lambda v: f"/Date({_millis(v)}+0000)/", parse_dotnet_date, False),
]


def per_record_ns(parse: Callable[[object], datetime], values: Sequence[object]) -> float:
    """Return one timing of parsing every value, in nanoseconds per value."""
    gc.disable()
    try:
        started = time.perf_counter_ns()
        for value in values:
            parse(value)
        return (time.perf_counter_ns() - started) / len(values)
    finally:
        gc.enable()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10x fewer records, for a smoke run")
    args = parser.parse_args(argv)
    count = RECORDS // 10 if args.quick else RECORDS
    moments = instants(count)

    inputs: list[tuple[str, Callable[[object], datetime], list[object]]] = [
        ("baseline", datetime.fromisoformat, [_iso_z(moment) for moment in moments])  # type: ignore[list-item]
    ]
    for name, encode, parse, whole_seconds in CASES:
        values = [encode(moment) for moment in moments]
        for moment, value in zip(moments, values, strict=True):
            expected = moment.replace(microsecond=0) if whole_seconds else moment
            parsed = parse(value)
            if parsed != expected or parsed.tzinfo is not UTC:
                sys.exit(f"{name}: {value!r} parsed as {parsed!r}, expected {expected!r}")
        inputs.append((name, parse, values))

    # Rounds interleave every case, so a machine busy for a while slows them all alike; the
    # best of the rounds is each case's cost.
    best = {name: float("inf") for name, _, _ in inputs}
    for _ in range(ROUNDS):
        for name, parse, values in inputs:
            best[name] = min(best[name], per_record_ns(parse, values))
    baseline = best["baseline"]

    print(f"Python {platform.python_version()} on {platform.machine()}, {count:,} records each")
    print(f"baseline: datetime.fromisoformat on ISO 'Z' text = {baseline:.0f} ns/record\n")
    print(f"{'encoding':44} {'example':32} {'ns/record':>9} {'ratio':>6}")
    for name, _, values in inputs[1:]:
        cost = best[name]
        print(f"{name:44} {values[0]!s:32} {cost:9.0f} {cost / baseline:6.2f}")
    # For scale: the general-purpose parser a connector might reach for instead.
    reference = min(per_record_ns(isoparse, inputs[0][2]) for _ in range(ROUNDS))  # type: ignore[arg-type]
    name = "(reference) dateutil isoparse, ISO Z"
    print(f"{name:44} {inputs[0][2][0]!s:32} {reference:9.0f} {reference / baseline:6.2f}")


if __name__ == "__main__":
    main()
