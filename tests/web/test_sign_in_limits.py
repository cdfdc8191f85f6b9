"""How often the console's secret may be tried: per client address and for all addresses.

The buckets are checked as pure values, then through the sign-in page on a real store, with the
console's clock moved by hand: a guesser is answered 429 with ``Retry-After``, even when the next
guess is right, and may go on once that time has passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from incsync.integrations.web import create_app
from incsync.integrations.web._throttle import (
    OVERALL,
    PER_ADDRESS,
    Bucket,
    Rate,
    SignInThrottle,
    refilled,
    wait,
)
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import ManualClock
from tests.web.world import CONFIGURED, build

UTC = timezone.utc
NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
ORIGIN = "http://testserver"
SECRET = "correct horse battery staple"
WRONG = "wrong secret, long enough"


# -- the buckets ----------------------------------------------------------------------------------


@given(
    tokens=st.floats(min_value=0, max_value=5),
    seconds=st.floats(min_value=-1_000, max_value=1_000, allow_nan=False),
)
def test_a_bucket_earns_back_at_its_rate_and_never_beyond_its_burst(
    tokens: float, seconds: float
) -> None:
    rate = Rate(burst=5, every=timedelta(seconds=20))
    elapsed = timedelta(seconds=seconds)  # to the microsecond
    later = refilled(Bucket(tokens, NOW), rate, NOW + elapsed)
    assert tokens <= later.tokens <= rate.burst
    gained = max(0.0, elapsed.total_seconds()) / 20
    assert later.tokens == pytest.approx(min(5.0, tokens + gained))
    if later.tokens >= 1:
        assert wait(later, rate) == timedelta(0)
    else:
        # Waiting the time given earns exactly the missing part of a try.
        due = refilled(later, rate, later.at + wait(later, rate))
        assert due.tokens == pytest.approx(1.0)


def test_a_refused_try_takes_nothing_and_full_buckets_are_forgotten() -> None:
    throttle = SignInThrottle(Rate(2, timedelta(seconds=10)), Rate(100, timedelta(seconds=1)))
    assert throttle.take("a", NOW) is None
    assert throttle.take("a", NOW) is None
    assert throttle.take("a", NOW) == timedelta(seconds=10)
    assert throttle.take("a", NOW + timedelta(seconds=4)) == timedelta(seconds=6)
    assert throttle.take("a", NOW + timedelta(seconds=10)) is None
    assert throttle.take("b", NOW + timedelta(seconds=10)) is None
    # Much later both buckets are full again: only the latest try's address is kept.
    assert throttle.take("c", NOW + timedelta(hours=1)) is None
    assert list(throttle._addresses) == ["c"]


# -- the sign-in page -----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "console.db") as sqlite:
        build(sqlite, NOW)
        yield sqlite


def _browser(store: SQLiteStore, clock: ManualClock, address: str = "192.0.2.1") -> TestClient:
    app = create_app(store, sources=CONFIGURED, secret=SECRET, clock=clock)
    return TestClient(app, base_url=ORIGIN, client=(address, 50000))


def _try(client: TestClient, secret: str) -> tuple[int, str | None, str]:
    page = client.get("/sign-in").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert token is not None
    response = client.post(
        "/sign-in",
        data={"name": "ana", "secret": secret, "csrf": token.group(1)},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    return response.status_code, response.headers.get("retry-after"), response.text


def test_one_address_may_try_five_times_then_waits(store: SQLiteStore) -> None:
    """The sixth try in a row is answered 429 with Retry-After, the right secret too; it signs
    in nobody; once the wait has passed, the next try goes ahead."""
    clock = ManualClock(NOW)
    client = _browser(store, clock)
    for _ in range(PER_ADDRESS.burst):
        assert _try(client, WRONG)[0] == 403
    status, retry_after, page = _try(client, SECRET)
    assert (status, retry_after) == (429, "20")
    assert "Too many tries: wait 20 seconds, then try again." in page
    assert "incsync_signed_in" not in client.cookies
    clock.advance(timedelta(seconds=19))
    assert _try(client, SECRET)[:2] == (429, "1")
    assert "Too many tries: wait 1 second, then try again." in _try(client, SECRET)[2]
    clock.advance(timedelta(seconds=1))
    assert _try(client, SECRET)[0] == 303
    assert "incsync_signed_in" in client.cookies


def test_many_addresses_together_are_limited_too(store: SQLiteStore) -> None:
    """Thirty tries from six addresses; the seventh address is refused at its first try."""
    clock = ManualClock(NOW)
    app = create_app(store, sources=CONFIGURED, secret=SECRET, clock=clock)
    addresses = [f"192.0.2.{number}" for number in range(1, 8)]
    clients = [TestClient(app, base_url=ORIGIN, client=(a, 50000)) for a in addresses]
    per_address = PER_ADDRESS.burst
    for client in clients[: OVERALL.burst // per_address]:
        for _ in range(per_address):
            assert _try(client, WRONG)[0] == 403
    assert _try(clients[-1], SECRET)[:2] == (429, "2")
    clock.advance(OVERALL.every)
    assert _try(clients[-1], SECRET)[0] == 303


def test_a_try_refused_by_the_gate_spends_nothing(store: SQLiteStore) -> None:
    """Posts from another site (no token, a foreign origin) cannot use up a person's tries."""
    client = _browser(store, ManualClock(NOW))
    for _ in range(20):
        forged = client.post(
            "/sign-in",
            data={"name": "ana", "secret": WRONG},
            headers={"origin": "https://evil.example"},
        )
        assert forged.status_code == 403
    assert _try(client, SECRET)[0] == 303


def test_german_wait(store: SQLiteStore) -> None:
    clock = ManualClock(NOW)
    client = _browser(store, clock)
    client.cookies.set("incsync_lang", "de")
    for _ in range(PER_ADDRESS.burst):
        _try(client, WRONG)
    assert "Warten Sie 20 Sekunden" in _try(client, WRONG)[2]
