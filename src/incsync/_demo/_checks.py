"""What the demo verifies: the SQLite sink against each fake's ground truth, and no leaked secret.

The comparisons are plain functions over what the store holds and what the fake says is true;
the demo prints their verdicts and stops with an error at the first one that fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from incsync.records import Transaction
from incsync.testing.fakes import FakeHubSpot, FakeQuickBooks

__all__ = ["SinkComparison", "compare_hubspot", "compare_quickbooks", "compare_sink", "leaks"]

_SHOWN = 3  # ids named in a failure message; the rest are counted


@attrs.frozen
class SinkComparison:
    """How the transactions of one source compare with the source's ground truth.

    Args:
        live: Records the source holds, each of which must be in the sink at its latest version.
        tombstones: Records deleted at the source, each of which must be a tombstone in the sink.
        missing: Ids the sink lacks (or holds live where a tombstone belongs, or the reverse).
        extra: Ids the sink holds that the source never had.
        stale: Ids whose stored version is not the source's latest.
    """

    live: int
    tombstones: int
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the sink holds exactly the source's records."""
        return not (self.missing or self.extra or self.stale)

    def problems(self) -> str:
        """Return what differs, naming a few ids of each kind; empty when nothing does."""
        parts = []
        for name, ids in (("missing", self.missing), ("extra", self.extra), ("stale", self.stale)):
            if ids:
                shown = ", ".join(ids[:_SHOWN]) + (", ..." if len(ids) > _SHOWN else "")
                parts.append(f"{len(ids):,} {name} ({shown})")
        return "; ".join(parts)


def compare_sink(
    held: Iterable[Transaction],
    live: Mapping[str, Any],
    deleted: Iterable[str],
    same: Callable[[Mapping[str, Any], Any], bool],
) -> SinkComparison:
    """Compare a source's transactions with its ground truth.

    Args:
        held: The source's transactions in the sink.
        live: The source's live records by id, as the fake describes them.
        deleted: The ids deleted at the source.
        same: Whether a stored payload is the live record's latest version.

    Returns:
        The comparison; ``ok`` when every live record is stored at its latest version, every
        deleted one is a tombstone, and nothing else is stored.
    """
    gone = set(deleted)
    seen: set[str] = set()
    extra: list[str] = []
    stale: list[str] = []
    wrong_kind: list[str] = []
    for transaction in held:
        record = transaction.record
        seen.add(record.id)
        if record.id in live:
            if record.deleted:
                wrong_kind.append(record.id)
            elif not same(record.payload, live[record.id]):
                stale.append(record.id)
        elif record.id in gone:
            if not record.deleted:
                wrong_kind.append(record.id)
        else:
            extra.append(record.id)
    absent = sorted((live.keys() | gone) - seen)
    return SinkComparison(
        live=len(live),
        tombstones=len(gone),
        missing=tuple(absent + wrong_kind),
        extra=tuple(extra),
        stale=tuple(stale),
    )


def compare_quickbooks(
    held: Iterable[Transaction], fake: FakeQuickBooks, entity: str
) -> SinkComparison:
    """Compare stored QuickBooks entities with the fake company's: payloads must be equal."""
    live = {entity_body["Id"]: entity_body for entity_body in fake.entities(entity)}
    return compare_sink(
        held, live, fake.deleted_ids(entity), lambda payload, truth: payload == truth
    )


def _same_deal(payload: Mapping[str, Any], truth: Mapping[str, str]) -> bool:
    properties = payload.get("properties")
    if not isinstance(properties, Mapping):
        return False
    return {name: value for name, value in properties.items() if value is not None} == truth


def compare_hubspot(held: Iterable[Transaction], fake: FakeHubSpot) -> SinkComparison:
    """Compare stored HubSpot deals with the fake portal's: the set properties must be equal."""
    return compare_sink(held, fake.ground_truth("deals"), fake.archived("deals"), _same_deal)


def leaks(paths: Sequence[Path], secrets: Iterable[str]) -> list[str]:
    """Return the names of the files among ``paths`` that contain any of ``secrets``.

    Files are read as bytes; a missing file leaks nothing.
    """
    needles = [secret.encode() for secret in secrets if secret]
    leaking = []
    for path in paths:
        if path.exists():
            content = path.read_bytes()
            if any(needle in content for needle in needles):
                leaking.append(path.name)
    return leaking
