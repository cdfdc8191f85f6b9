"""Helpers shared by test modules that run against every built-in store."""

from __future__ import annotations

import inspect
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from incsync import ApplyResult, Outcome, Record, SQLiteStore, Transaction
from incsync.connectors import InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.history import CycleEntry
from incsync.protocols import TransactionSink
from incsync.stores.postgres import PostgresStore
from incsync.testing import InMemoryStore
from tests.delegating import DelegatingSink

__all__ = [
    "StallingSink",
    "StallingStore",
    "Store",
    "django_settings",
    "entry_of",
    "on_page",
    "records_before",
    "recursion_limit",
    "transactions_by_id",
    "unwritable",
]

Store = InMemoryStore | SQLiteStore | PostgresStore
"""A built-in store: state store, transaction sink and atomic page committer in one."""


def records_before(now: datetime, count: int = 300) -> InMemorySource:
    """Return a source of ``count`` records ``r0000``…, a second apart, the last an hour before
    ``now``."""
    source = InMemorySource()
    for number in range(count):
        at = now - timedelta(hours=1, seconds=count - number)
        source.put({"id": f"r{number:04d}", "updated_at": iso_timestamp(at)})
    return source


def on_page(page: int, act: Callable[[], object]) -> Callable[[int], None]:
    """Return a ``before_page`` hook that runs ``act`` while page ``page`` (from 0) is read."""

    def hook(number: int) -> None:
        if number == page:
            act()

    return hook


def entry_of(
    source_key: str,
    at: datetime,
    outcome: Outcome = Outcome.COMPLETED,
    **fields: Any,
) -> CycleEntry:
    """Return a cycle entry of ``source_key`` that started and ended at ``at``, for store tests."""
    return CycleEntry(
        source_key=source_key,
        generation=fields.pop("generation", 0),
        worker=fields.pop("worker", "worker-1"),
        started=at,
        ended=fields.pop("ended", at),
        outcome=outcome,
        **fields,
    )


def transactions_by_id(store: Store, source_key: str) -> dict[str, Transaction]:
    """Return the source's transactions keyed by record id."""
    return {transaction.record.id: transaction for transaction in store.transactions(source_key)}


class StallingSink(DelegatingSink):
    """A sink whose writer stalls before writing a page: ``meanwhile(page)`` runs, then the write.

    It stalls once, on the first page ``stalls_on`` accepts (any page by default), so a test can
    let the world move on (another worker's whole cycle) between a read and its late write.
    """

    def __init__(
        self,
        inner: TransactionSink,
        meanwhile: Callable[[Sequence[Record]], None],
        stalls_on: Callable[[Sequence[Record]], bool] = lambda page: True,
    ) -> None:
        self.inner = inner
        self._meanwhile: Callable[[Sequence[Record]], None] | None = meanwhile
        self._stalls_on = stalls_on

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        self._stall(records)
        return self.inner.apply(source_key, records, generation, token)

    def _stall(self, records: Sequence[Record]) -> None:
        if self._meanwhile is not None and self._stalls_on(records):
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile(records)


class StallingStore(StallingSink):
    """A built-in store, its own sink, whose writer stalls inside a page commit."""

    def __init__(
        self,
        inner: Store,
        meanwhile: Callable[[Sequence[Record]], None],
        stalls_on: Callable[[Sequence[Record]], bool] = lambda page: True,
    ) -> None:
        super().__init__(inner, meanwhile, stalls_on)
        self.store = inner

    def commit_page(self, source_key: str, records: Sequence[Record], *args: Any) -> Any:
        self._stall(records)
        return self.store.commit_page(source_key, records, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@contextmanager
def recursion_limit(*, frames_left: int) -> Iterator[None]:
    """Leave the block only ``frames_left`` frames of recursion, so code that recurses once per
    level of a deep value fails inside it.
    """
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + frames_left)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Make ``path`` (a file, or a directory: nothing may be created in it) unwritable, then not.

    File modes do not bind root, which CI runs as: there the file is made immutable
    (``chattr +i``), which refuses root's writes too. Without either way the test skips (fails
    under CI).
    """
    if os.geteuid() != 0:
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], check=False).returncode:
        reason = f"cannot make {path} immutable as root (chattr +i)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the read-only tests")
        pytest.skip(reason)
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@contextmanager
def django_settings(**settings: object) -> Iterator[None]:
    """Run the block with Django configured with ``settings`` (over Django's defaults).

    Django's settings belong to the process and are configured once: they are configured empty
    the first time, and each test gives its own for its block only, so that no test depends on
    which one happened to configure Django first.
    """
    import django
    from django.conf import settings as django_configuration
    from django.test import override_settings

    if not django_configuration.configured:
        django_configuration.configure()
        django.setup()
    with override_settings(**settings):
        yield
