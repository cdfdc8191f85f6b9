"""The commands on mapped transactions: ``remap`` and ``transactions`` (CSV or JSON Lines).

Neither calls a source: they open the store the config file names, with each source's mapping
(its ``mapping = "vendor/object"`` key), and nothing else.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import IO, Any

from incsync.engine import SyncEngine
from incsync.humanize import plural
from incsync.integrations.cli._commands import EXIT_OK, open_store
from incsync.integrations.cli._config import Config
from incsync.mapping import MappedRow
from incsync.mapping._columns import MAPPED_COLUMNS, mapped_values
from incsync.views import terminal_safe

__all__ = ["remap_command", "transaction_fields", "transactions_command"]


def transaction_fields(row: MappedRow) -> dict[str, Any]:
    """Return one exported transaction, by the stores' column names and in their order.

    Amounts are decimal text and dates ISO 8601; lines and custom fields are JSON text, as the
    stores keep them (numbers as text, so no digit is lost on the way through a spreadsheet).
    """
    values = mapped_values(row.transaction.source_key or "", row)
    return {
        name: value.isoformat()
        if isinstance(value, date)
        else str(value)
        if isinstance(value, Decimal)
        else value
        for name, value in zip(MAPPED_COLUMNS, values, strict=True)
    }


def _write_csv(rows: Iterable[MappedRow], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=MAPPED_COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        fields = transaction_fields(row)
        # A vendor's text reaches a terminal or a spreadsheet: no control character may pass.
        writer.writerow(
            {
                name: terminal_safe(value) if isinstance(value, str) else value
                for name, value in fields.items()
            }
        )
        count += 1
    return count


def _write_jsonl(rows: Iterable[MappedRow], out: IO[str]) -> int:
    count = 0
    for row in rows:
        fields = transaction_fields(row)
        fields["lines"] = json.loads(fields["lines"])
        fields["custom"] = json.loads(fields["custom"])
        # ASCII, like every JSON output: a vendor's escapes cannot drive the terminal.
        out.write(json.dumps(fields, ensure_ascii=True) + "\n")
        count += 1
    return count


def transactions_command(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    """Export one source's mapped transactions dated in ``[--since, --until)``.

    Raises:
        ConfigFileError: The key names no source of the file.
        ConfigurationError: ``--until`` is before ``--since``, or the store keeps no mapped rows.
    """
    since: date | None = args.since
    until: date | None = args.until
    config.require_mapping(args.key)
    with open_store(config) as store:
        rows = SyncEngine(store).mapped_transactions(
            args.key, since=since, until=until, include_voided=not args.live
        )
        write = _write_csv if args.format == "csv" else _write_jsonl
        write(rows, out)
    return EXIT_OK


def remap_command(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    """Recompute one source's mapped rows from the stored records with its current mapping.

    Raises:
        ConfigFileError: The key names no source of the file, or one without a mapping.
    """
    config.require_mapping(args.key)
    with open_store(config) as store:
        result = SyncEngine(store).remap(args.key, page_size=args.page_size)
    if args.json:
        out.write(
            json.dumps(
                {
                    "source_key": result.source_key,
                    "mapping": result.mapping,
                    "mapping_version": result.mapping_version,
                    "pages": result.pages,
                    "examined": result.examined,
                    "written": result.written,
                    "voided": result.voided,
                    "unmappable": [
                        {"record_id": refused.record_id, "reason": refused.reason}
                        for refused in result.unmappable
                    ],
                },
                ensure_ascii=True,
            )
            + "\n"
        )
        return EXIT_OK
    out.write(
        f"{args.key}: re-mapped with {result.mapping} (version {result.mapping_version}): "
        f"{plural(result.written, 'row')} written, {plural(result.voided, 'row')} made void, "
        f"{plural(len(result.unmappable), 'record')} cannot be mapped\n"
    )
    for refused in result.unmappable:
        out.write(f"  {terminal_safe(refused.record_id or '?')}: {terminal_safe(refused.reason)}\n")
    return EXIT_OK
