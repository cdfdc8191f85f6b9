"""Helpers shared by test modules that run against every built-in store."""

from __future__ import annotations

from incsync import SQLiteStore, Transaction
from incsync.stores.postgres import PostgresStore
from incsync.testing import InMemoryStore

__all__ = ["Store", "transactions_by_id"]

Store = InMemoryStore | SQLiteStore | PostgresStore
"""A built-in store: state store, transaction sink and atomic page committer in one."""


def transactions_by_id(store: Store, source_key: str) -> dict[str, Transaction]:
    """Return the source's transactions keyed by record id."""
    return {transaction.record.id: transaction for transaction in store.transactions(source_key)}
