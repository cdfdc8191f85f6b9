"""The fakes take a vendor's time and keep its limits on concurrent requests and on the real clock.

Waits are asserted from below only (a sleep lasts at least its time), and concurrency with
requests released together by a barrier while each answer takes far longer than the releases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from incsync.connectors.throttle import quickbooks_throttle, xero_throttle
from incsync.testing.fakes import (
    FakeQuickBooks,
    FakeStripe,
    FakeVendor,
    FakeXero,
    Latency,
    RunningClock,
)
from incsync.testing.fakes.stripe import LIVE_READS_PER_SECOND
from incsync.testing.fakes.xero import XeroLimits

UTC = timezone.utc
# Long beside the time a barrier takes to release a dozen threads, short for a test.
SLOW = Latency(fixed=1.0)


class _Pages(FakeVendor):
    """Answers every request with a page of ``size`` records, as most vendors wrap them."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def handle(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": n} for n in range(self.size)]})


def _together(count: int, send: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Send ``count`` requests from as many threads released at once; return the answers."""
    barrier = threading.Barrier(count)
    answers: list[httpx.Response] = []

    def one() -> None:
        barrier.wait()
        answers.append(send())

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_latency_is_fixed_plus_per_record_plus_drawn_jitter() -> None:
    latency = Latency(fixed=0.15, per_record=0.001, jitter=0.05, seed=3)
    assert latency.seconds(0, 0.0) == pytest.approx(0.15)
    assert latency.seconds(1000, 0.5) == pytest.approx(0.15 + 1.0 + 0.025)


@pytest.mark.parametrize("field", ["fixed", "per_record", "jitter"])
def test_a_negative_latency_is_refused_with_its_name(field: str) -> None:
    with pytest.raises(ValueError, match=f"Latency.{field} must be seconds of 0 or more"):
        Latency(**{field: -0.1})  # type: ignore[arg-type]


def test_an_answer_waits_its_latency_and_longer_for_more_records() -> None:
    """A page of 200 records at 1 ms a record leaves at least 0.2 s after the fixed part."""
    fake = _Pages(200)
    fake.latency = Latency(fixed=0.05, per_record=0.001)
    with httpx.Client(transport=fake.transport(), base_url="http://fake") as client:
        began = time.perf_counter()
        assert client.get("/page").status_code == 200
        assert time.perf_counter() - began >= 0.25
        fake.latency = None
        began = time.perf_counter()
        client.get("/page")
        assert time.perf_counter() - began < 0.25


def test_jitter_is_drawn_from_the_seed_so_two_runs_wait_alike() -> None:
    waits = []
    for _ in range(2):
        fake = _Pages(1)
        fake.latency = Latency(jitter=1.0, seed=42)
        waits.append([fake._wait(httpx.Response(200)) for _ in range(5)])
    assert waits[0] == waits[1]
    assert len(set(waits[0])) == 5


def test_answers_wait_outside_the_lock_so_requests_are_in_flight_together() -> None:
    """Over loopback, four requests sent at once all take ~one latency, not four in a row."""
    fake = _Pages(1)
    fake.latency = SLOW
    with fake.serve() as url, httpx.Client(base_url=url) as client:
        began = time.perf_counter()
        answers = _together(4, lambda: client.get("/page"))
        elapsed = time.perf_counter() - began
    assert [answer.status_code for answer in answers] == [200] * 4
    assert fake.in_flight_peak == 4
    assert elapsed < 4 * SLOW.fixed


def _quickbooks_query(fake: FakeQuickBooks, client: httpx.Client) -> httpx.Response:
    return client.get(
        f"/v3/company/{fake.realm_id}/query",
        params={"query": "SELECT * FROM Invoice", "minorversion": "75"},
    )


def test_quickbooks_refuses_the_eleventh_request_in_flight_with_its_throttle_fault() -> None:
    """Intuit allows 10 concurrent requests per company; the 11th is a Fault 3001 429."""
    fake = FakeQuickBooks()
    fake.latency = SLOW
    tokens = fake.grant_tokens()
    headers = {"Authorization": f"Bearer {tokens.access_token}", "Accept": "application/json"}
    transport = fake.transport()
    with httpx.Client(transport=transport, base_url="http://qb", headers=headers) as client:
        answers = _together(11, lambda: _quickbooks_query(fake, client))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 10 + [429]
    refused = next(answer for answer in answers if answer.status_code == 429)
    throttle = quickbooks_throttle(refused)
    assert throttle is not None
    assert not throttle.quota


def test_xero_refuses_the_sixth_call_in_progress_as_a_burst_to_retry() -> None:
    """Xero allows 5 calls in progress per tenant; the 6th is a 429 that says to retry in 1 s."""
    for _ in range(3):
        fake = FakeXero(limits=XeroLimits(per_minute=None, per_day=None))
        fake.latency = SLOW
        tokens = fake.grant_tokens()
        headers = {
            "Authorization": f"Bearer {tokens.access_token}",
            "Xero-tenant-id": fake.tenant_id,
        }
        with httpx.Client(transport=fake.transport(), base_url="http://xero", headers=headers) as c:
            answers = _together(6, lambda: c.get("/api.xro/2.0/Invoices", params={"page": "1"}))
        # On a loaded machine a thread may send its call only after the others' second of
        # latency: then fewer than six were ever in progress, and the trial says nothing.
        if fake.in_flight_peak == 6:
            break
    assert fake.in_flight_peak == 6, "six calls were never in progress at once in three trials"
    assert sorted(answer.status_code for answer in answers) == [200] * 5 + [429]
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["X-Rate-Limit-Problem"] == "concurrent"
    throttle = xero_throttle(refused)
    assert throttle is not None
    assert not throttle.quota
    assert throttle.wait_seconds(datetime.now(UTC)) == 1


def test_calls_arriving_together_past_the_limit_refuse_only_those_over_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten calls counted in before any is answered: five are answered, five refused.

    Each call is made to wait, once counted in progress, until all ten are: the interleaving a
    loaded machine produces now and then. Whether a call is over the limit was decided as it
    was counted, against the calls admitted before it, so a refused call takes no place from
    those after it, and the first five are never refused for the calls that came after them.
    """
    fake = FakeXero(limits=XeroLimits(per_minute=None, per_day=None))
    fake.latency = SLOW
    tokens = fake.grant_tokens()
    headers = {"Authorization": f"Bearer {tokens.access_token}", "Xero-tenant-id": fake.tenant_id}
    request = httpx.Request("GET", "http://xero/api.xro/2.0/Invoices", headers=headers)
    all_counted = threading.Barrier(10)
    answer = fake._answer  # where a call counted in progress is answered

    def answered_once_all_are_counted(*args: object, **kwargs: object) -> object:
        all_counted.wait()
        return answer(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fake, "_answer", answered_once_all_are_counted)
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(fake.dispatch(request))) for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answer.status_code for answer in answers) == [200] * 5 + [429] * 5
    assert fake.in_flight_peak == 10


def test_stripe_on_the_real_clock_refuses_the_101st_read_of_a_second() -> None:
    clock = RunningClock()
    # The start of a second, so the reads below cannot straddle two of them.
    clock.set(datetime(2024, 6, 1, 12, tzinfo=UTC))
    fake = FakeStripe(clock=clock, reads_per_second=LIVE_READS_PER_SECOND)
    headers = {"Authorization": f"Bearer {fake.secret_key}"}
    with httpx.Client(transport=fake.transport(), base_url="http://s", headers=headers) as client:
        statuses = [client.get("/v1/invoices").status_code for _ in range(101)]
        assert statuses == [200] * 100 + [429]
        assert client.get("/v1/invoices").json()["error"]["code"] == "rate_limit"
        clock.advance(timedelta(seconds=1))
        assert client.get("/v1/invoices").status_code == 200


def test_a_running_clock_follows_the_real_time_from_where_it_was_set() -> None:
    clock = RunningClock()
    moment = datetime(2020, 1, 1, tzinfo=UTC)
    clock.set(moment)
    first = clock()
    assert moment <= first < moment + timedelta(seconds=5)
    time.sleep(0.01)
    assert clock() > first
    assert clock.advance(timedelta(hours=1)) >= first + timedelta(hours=1)
