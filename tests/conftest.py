"""Test-suite settings shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from incsync import SQLiteStore
from incsync.testing import InMemoryStore
from tests.helpers import Store

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


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each built-in store in turn: what holds for one must hold for the other."""
    if request.param == "memory":
        yield InMemoryStore()
    else:
        with SQLiteStore(tmp_path / "incsync.db") as sqlite:
            yield sqlite
