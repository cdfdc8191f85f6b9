"""Stores that keep mapped transactions: each built-in store in turn, on the `store` fixture's
database."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack

import pytest

from incsync import SQLiteStore
from incsync.mapping import TransactionMapping
from incsync.mapping._kept import MappingLookup
from incsync.stores.postgres import PostgresStore
from incsync.testing import InMemoryStore
from tests.helpers import Store
from tests.stores.postgres_server import require_server

MakeStore = Callable[[Mapping[str, TransactionMapping] | MappingLookup], Store]
"""Returns a store of the parametrised kind, on the same database, keeping these mappings."""


@pytest.fixture
def mapped_store(store: Store) -> Iterator[MakeStore]:
    """Each built-in store in turn, as a factory taking the mappings it keeps."""
    opened = ExitStack()

    def make(mappings: Mapping[str, TransactionMapping] | MappingLookup) -> Store:
        if isinstance(store, InMemoryStore):
            return InMemoryStore(mappings=mappings)
        if isinstance(store, SQLiteStore):
            return opened.enter_context(SQLiteStore(store.path, mappings=mappings))
        return opened.enter_context(
            PostgresStore(require_server(), schema=store.schema, mappings=mappings)
        )

    with opened:
        yield make
