"""Benchmark of the file connector against a bare ``csv.DictReader`` loop over the same file.

Run ``python -m bench.vendor_files`` from the project root (``--rows N`` to change the size).
A CSV export of N rows (id, name, amount, ISO updated_at, deleted flag) is written to a temporary
folder; then, alternating, a bare loop counts the rows of ``csv.DictReader`` (no parsing of
anything) and the connector reads the whole file into pages (line numbers, byte offsets, utf-8
checks, timestamp parsing, record building, tombstone rule). The best of ``ROUNDS`` runs of each
side is reported, with the ratio of the connector's records/s to the bare loop's.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from incsync.connectors.files import FileConnector
from incsync.cursor import Window

__all__ = ["bare_rows", "connector_rows", "main", "write_export"]

ROUNDS = 5
DEFAULT_ROWS = 200_000


def write_export(path: Path, rows: int) -> None:
    """Write a CSV export of ``rows`` rows, one second apart, every 50th deleted."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("id,name,amount,updated_at,deleted\n")
        for n in range(rows):
            stamp = start + timedelta(seconds=n)
            deleted = "yes" if n % 50 == 0 else ""
            handle.write(
                f"c{n:07d},customer {n % 977},{n % 9973}.50,{stamp:%Y-%m-%dT%H:%M:%S}Z,{deleted}\n"
            )


def bare_rows(path: Path) -> int:
    """Count the rows of ``csv.DictReader``: the least any reader of the file does."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def connector_rows(path: Path) -> int:
    """Read the file through the connector, as a first (full) cycle would; count the records."""
    connector = FileConnector(
        path,
        id_column="id",
        updated_at_column="updated_at",
        tombstone_column="deleted",
        tombstone_values=("yes",),
    )
    return sum(len(page.records) for page in connector.read(Window()))


def main(argv: list[str] | None = None) -> int:
    """Write the export, time both sides alternately, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows in the export")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.csv"
        write_export(path, args.rows)
        size = path.stat().st_size
        bare_times: list[float] = []
        connector_times: list[float] = []
        for _ in range(ROUNDS):
            began = time.perf_counter()
            if bare_rows(path) != args.rows:
                raise RuntimeError("the bare loop read a different number of rows")
            bare_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            if connector_rows(path) != args.rows:
                raise RuntimeError("the connector read a different number of records")
            connector_times.append(time.perf_counter() - began)
    bare, connector = min(bare_times), min(connector_times)
    print(f"export: {args.rows:,} rows, {size / 1e6:.1f} MB; best of {ROUNDS} alternating runs")
    print(f"bare csv.DictReader: {args.rows / bare:>10,.0f} rows/s   ({bare:.3f} s)")
    print(f"FileConnector:       {args.rows / connector:>10,.0f} records/s ({connector:.3f} s)")
    print(f"ratio (connector / bare): {bare / connector:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
