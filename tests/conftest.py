"""Test-suite settings shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from incsync import SQLiteStore
from incsync.connectors.memory import InMemoryConnector
from incsync.stores.postgres import PostgresStore
from incsync.testing import InMemoryStore
from tests.helpers import Store
from tests.stores.postgres_server import fresh_schema, migrated_store, require_server

# Two cores shared with a browser, subprocesses and SQLite make wall-clock limits flaky: correctness
# here never depends on how fast an example runs. In CI the examples are derived from each test's
# name, so a red build is reproducible and never caused by a newly drawn input.
settings.register_profile(
    "incsync",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
    print_blob=True,
)
settings.load_profile("incsync")


@pytest.fixture
def postgres_conninfo() -> str:
    """The test server's connection string (the test skips, or fails under CI, without one)."""
    return require_server()


@pytest.fixture
def postgres_schema(postgres_conninfo: str) -> Iterator[str]:
    """A schema of its own for the test, dropped at teardown."""
    with fresh_schema() as schema:
        yield schema


@pytest.fixture
def postgres_store(postgres_schema: str) -> Iterator[PostgresStore]:
    """A migrated PostgresStore on the test's own schema."""
    with migrated_store(postgres_schema) as store:
        yield store


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each built-in store in turn: what holds for one must hold for the others."""
    if request.param == "memory":
        yield InMemoryStore()
    elif request.param == "sqlite":
        with SQLiteStore(tmp_path / "incsync.db") as sqlite:
            yield sqlite
    else:
        yield request.getfixturevalue("postgres_store")


@pytest.fixture(autouse=True)
def _partitioned_full_reads(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``INCSYNC_TEST_PARTITIONS=N``, every in-memory connector reads full reads in N parts.

    The scenario suites then run with the engine's partitioned full reads (see
    incsync.partitions) wherever a test does not choose its own count: ``make test-partitions``.
    A test marked ``one_reader`` builds its connectors where it cannot choose the count (the
    command line's config, the documentation's examples) and states what the default shows.
    """
    count = os.environ.get("INCSYNC_TEST_PARTITIONS")
    if count and request.node.get_closest_marker("one_reader") is None:
        defaults = InMemoryConnector.__init__.__kwdefaults__
        assert defaults is not None
        monkeypatch.setitem(defaults, "partitions", int(count))
