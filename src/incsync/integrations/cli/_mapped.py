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
from typing import IO, Any

from incsync.engine import SyncEngine
from incsync.humanize import plural
from incsync.integrations.cli._commands import EXIT_OK, open_store
from incsync.integrations.cli._config import Config
from incsync.mapping import MappedRow
from incsync.mapping._kept import custom_json, lines_json
from incsync.views import terminal_safe

__all__ = ["TRANSACTION_COLUMNS", "remap_command", "transaction_fields", "transactions_command"]

TRANSACTION_COLUMNS = (
    "source_key",
    "record_id",
    "business_date",
    "kind",
    "status",
    "amount",
    "currency",
    "customer_id",
    "customer_name",
    "owner_id",
    "owner_name",
    "owner_email",
    "voided",
    "void_reason",
    "mapping",
    "mapping_version",
    "updated_at",
    "lines",
    "custom",
)
"""The fields of an exported transaction, in the CSV's column order."""


def transaction_fields(row: MappedRow) -> dict[str, Any]:
    """Return one exported transaction: amounts as decimal text, dates in ISO 8601.

    Lines and custom fields are JSON text, as the stores keep them (numbers as text, so no digit
    is lost on the way through a spreadsheet or a float).
    """
    value = row.transaction
    customer, owner = value.customer, value.owner
    return {
        "source_key": value.source_key,
        "record_id": value.record_id,
        "business_date": value.date.isoformat(),
        "kind": value.kind.value,
        "status": value.status.value,
        "amount": str(value.amount),
        "currency": value.currency,
        "customer_id": None if customer is None else customer.id,
        "customer_name": None if customer is None else customer.name,
        "owner_id": None if owner is None else owner.id,
        "owner_name": None if owner is None else owner.name,
        "owner_email": None if owner is None else owner.email,
        "voided": row.voided,
        "void_reason": row.void_reason,
        "mapping": row.mapping,
        "mapping_version": row.mapping_version,
        "updated_at": row.updated_at.isoformat(),
        "lines": lines_json(value.lines),
        "custom": custom_json(value.custom),
    }


def _write_csv(rows: Iterable[MappedRow], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=TRANSACTION_COLUMNS, lineterminator="\n")
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
