"""Sources in every state the console shows, made by running real cycles on a real store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from incsync.connectors import BaseConnector, InMemoryConnector
from incsync.connectors.base import RawPage
from incsync.cursor import Window
from incsync.engine import SyncEngine
from incsync.errors import AuthError
from incsync.protocols import Clock
from incsync.testing import InMemoryStore
from tests.helpers import Store, records_before

GREEN = "acme/invoices"
"""Synced, changed an hour ago, two records set aside (hostile ones)."""
RED = "globex/contacts"
"""Stopped: its credentials were rejected twice."""
GREY = "initech/orders"
"""Cancelled by ana."""
HOSTILE = 'Stark <b>CRM</b> "x" & \x1b[2J'
"""Configured, never run; its name carries markup and a terminal escape."""
CONFIGURED = (GREEN, RED, GREY, HOSTILE)

HOSTILE_RAW = '<script>alert("owned")</script>\x1b]0;owned\x07'


class _WithHostileRows(InMemoryConnector):
    """Reads the source, after a page of two records that are set aside."""

    def fetch(self, window: Window) -> Iterator[RawPage]:
        yield [
            {"id": "<img src=x onerror=alert(1)>", "updated_at": HOSTILE_RAW},
            {"id": "bidi\u202etxt", "updated_at": "last tuesday"},
        ]
        yield from super().fetch(window)


class _Rejected(BaseConnector):
    """Every read fails: the source rejects the credentials."""

    ordered = True

    def fetch(self, window: Window) -> Iterator[RawPage]:
        yield from ()
        raise AuthError("401 Unauthorized: <b>invalid_grant</b> \x1b[31mrefresh token revoked")


def build(store: Store | InMemoryStore, now: datetime, clock: Clock | None = None) -> SyncEngine:
    """Put the sources of :data:`CONFIGURED` (but the never-run one) into ``store``."""
    engine = SyncEngine(store, clock=clock or (lambda: now), holder="worker-1")
    # One reader: the two rows come once per read, and a read in partitions is several.
    hostile = _WithHostileRows(records_before(now, 30), page_size=10, partitions=1)
    engine.run_cycle(GREEN, hostile)
    for _ in range(2):
        engine.run_cycle(RED, _Rejected())
    # One reader: the page shows this cycle's counts (a read in partitions may read one twice).
    grey = InMemoryConnector(records_before(now - timedelta(days=12), 5), partitions=1)
    engine.run_cycle(GREY, grey)
    engine.cancel(GREY, actor="ana")
    return engine
