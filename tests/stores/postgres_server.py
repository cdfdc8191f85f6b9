"""The PostgreSQL server the tests run against, and a fresh schema for each test.

The server is ``INCSYNC_TEST_POSTGRES`` (a libpq connection string), by default database ``test``
on 127.0.0.1:5432 as user ``postgres``. Without a reachable server the tests that need it skip,
except under CI (``CI`` set), where they fail: CI must not pass by skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import NoReturn

import psycopg
import pytest

from incsync.mapping._kept import MappingLookup
from incsync.stores.postgres import PostgresStore

__all__ = ["CONNINFO", "drop_schema", "fresh_schema", "migrated_store", "require_server"]

CONNINFO = os.environ.get(
    "INCSYNC_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests, so they may not skip")
    pytest.skip(reason)


def require_server() -> str:
    """Return the connection string, or skip (fail under CI) when the server is unreachable."""
    try:
        with psycopg.connect(CONNINFO, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        _unavailable(f"PostgreSQL at {CONNINFO!r} is unreachable: {error}")
    return CONNINFO


def drop_schema(schema: str) -> None:
    """Drop ``schema`` and everything in it, if it exists."""
    with psycopg.connect(CONNINFO, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def fresh_schema() -> Iterator[str]:
    """Yield the name of a schema no other test uses; it is dropped afterwards.

    Skips (fails under CI) before anything is created when the server is unreachable.
    """
    require_server()
    schema = f"incsync_test_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        drop_schema(schema)


@contextmanager
def migrated_store(
    schema: str,
    *,
    max_size: int = 4,
    statement_timeout: timedelta = timedelta(seconds=30),
    mappings: MappingLookup | None = None,
) -> Iterator[PostgresStore]:
    """Yield a store on ``schema`` with its tables created; closed afterwards."""
    with PostgresStore(
        require_server(),
        schema=schema,
        max_size=max_size,
        statement_timeout=statement_timeout,
        mappings=mappings,
    ) as store:
        store.migrate()
        yield store
