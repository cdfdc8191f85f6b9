"""What every fake vendor shares: a request handler served in-process or on a loopback port.

A fake answers at once unless it is given a :class:`Latency`: then every answer leaves after the
time a real vendor takes (a round trip and its work, more for a larger page), outside the fake's
lock, so requests sent concurrently are in flight together as they are at a real vendor. A fake
that documents a limit on concurrent requests (QuickBooks 10 per company, Xero 5 per tenant)
refuses the one over it with that vendor's own throttle answer. Together with a
:class:`RunningClock`, on which the fakes count their rate limits, a fake then makes a client wait
what the vendor would make it wait.
"""

from __future__ import annotations

import abc
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import httpx

from incsync.testing import ManualClock
from incsync.timestamps import utc_now

__all__ = ["FakeVendor", "Latency", "RecordedRequest", "RunningClock"]

Fault = Callable[[httpx.Request], "httpx.Response | None"]
"""Looks at a request and answers it instead of the fake (a throttle, an outage), or passes."""

# A Host header the fake takes as the address it was asked at: a name or address, and a port.
_AUTHORITY = re.compile(r"[\w.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")

# Headers that carry credentials: recorded as present, never by value.
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-api-token", "cookie"})


class _Server(ThreadingHTTPServer):
    """The standard library's threading HTTP server, with a vendor's backlog of connections."""

    daemon_threads = True
    # The standard library listens with a backlog of 5. A client that opens more connections at
    # once than that (eight partition readers) has the rest dropped by the kernel until its SYN
    # is sent again, a second later: a stall no vendor's load balancer causes.
    request_queue_size = 128


def _non_negative_seconds(
    _instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"Latency.{attribute.name} must be seconds of 0 or more, got {value!r}")


@attrs.frozen
class Latency:
    """How long a fake takes to answer a request: ``fixed + per_record * records + jitter``.

    ``fixed`` stands for the network round trip and the vendor's own overhead; ``per_record``
    for its work on each record of the page (a larger page takes longer); ``jitter`` adds up to
    that many seconds more, drawn uniformly from a generator seeded with ``seed``, so two runs of
    one scenario wait alike. Every answer waits, throttles and errors included (they too make a
    round trip).

    Args:
        fixed: Seconds every answer takes.
        per_record: Seconds more for each record the answer holds.
        jitter: Up to this many seconds more, uniformly drawn.
        seed: Seeds the draws of the jitter.

    Raises:
        ValueError: A duration is negative or not a number.
    """

    fixed: float = attrs.field(default=0.0, validator=_non_negative_seconds)
    per_record: float = attrs.field(default=0.0, validator=_non_negative_seconds)
    jitter: float = attrs.field(default=0.0, validator=_non_negative_seconds)
    seed: int = 0

    def seconds(self, records: int, draw: float) -> float:
        """Return the wait of an answer holding ``records`` records; ``draw`` is in [0, 1)."""
        return self.fixed + self.per_record * records + self.jitter * draw


class RunningClock(ManualClock):
    """The real time, for fakes that must throttle as the vendor does: it moves by itself.

    It is a :class:`~incsync.testing.ManualClock` so that every fake takes it; moving it
    (``advance``, ``set``) shifts it from the real time, which it then keeps following. A fake on
    it counts its rate limits against the real clock: a client that sends faster than the vendor
    allows is refused, and waits, as it would in production.
    """

    def __init__(self) -> None:
        super().__init__(utc_now())
        self._shift = timedelta(0)

    def __call__(self) -> datetime:
        """Return the real time, moved by however far the clock was moved."""
        return utc_now() + self._shift

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock ``delta`` ahead of where it would be; return the new time."""
        self._shift += delta
        return self()

    def set(self, moment: datetime) -> None:
        """Make the clock read ``moment`` now; it runs on from there."""
        self._shift = moment - utc_now()


@attrs.frozen
class RecordedRequest:
    """A request a fake received, for tests to assert on (credentials masked).

    Args:
        method: The HTTP method.
        url: The full URL, query included.
        headers: The headers, with credential values replaced by ``"***"``.
        status: The status the fake answered with.
    """

    method: str
    url: str
    headers: dict[str, str]
    status: int


class FakeVendor(abc.ABC):
    """An in-process fake of one vendor's API.

    A subclass implements :meth:`handle`. Tests reach it through :meth:`transport` (no socket) or
    :meth:`serve` (a real HTTP server on 127.0.0.1), queue faults with :meth:`add_fault`, and read
    :attr:`requests` afterwards. Requests are handled one at a time, as one consistent backend;
    the :attr:`latency` of each answer is waited outside that lock, so concurrent requests are in
    flight together.

    Attributes:
        latency: How long each answer takes; ``None`` (the default, for fast tests) answers at
            once.
        max_concurrent: The vendor's documented limit on requests in flight at once (a class
            attribute; ``None``: none). A request over it gets :meth:`concurrency_refusal`.
        in_flight_peak: The most requests that were in flight at once (received, not yet
            answered).
    """

    max_concurrent: int | None = None

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.latency: Latency | None = None
        self._in_flight = 0
        self._admitted = 0  # in flight and not refused as over max_concurrent
        self.in_flight_peak = 0
        self._draws: tuple[int, random.Random] | None = None

    @abc.abstractmethod
    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as the vendor would."""

    def now(self) -> datetime:
        """Return the vendor's clock: what its answers' ``Date`` header says (real time here).

        A fake with a clock of its own returns it, so a test can put the vendor's clock and the
        host's apart, as real clocks drift.
        """
        return datetime.now(timezone.utc)

    def add_fault(self, fault: Fault) -> None:
        """Let ``fault`` answer requests before the fake does, until it returns ``None`` again.

        Faults are asked in the order they were added; the first that answers wins.
        """
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def records_in(self, response: httpx.Response) -> int:
        """Return how many records ``response`` holds, for :attr:`Latency.per_record`.

        Every vendor puts a page's records in a JSON list at the top of its body or one level
        down (QuickBooks' ``QueryResponse.Invoice``, Salesforce's ``records``, Stripe's
        ``data``...): the longest such list is the page. Any other body holds none.
        """
        try:
            body = json.loads(response.content)
        except (ValueError, RecursionError):
            return 0
        if not isinstance(body, dict):
            return len(body) if isinstance(body, list) else 0
        values = [*body.values()]
        values += [
            item for value in body.values() if isinstance(value, dict) for item in value.values()
        ]
        return max((len(value) for value in values if isinstance(value, list)), default=0)

    def concurrency_refusal(self, request: httpx.Request) -> httpx.Response:
        """Return the vendor's answer to a request over :attr:`max_concurrent`: a plain 429."""
        return httpx.Response(429, text="Too many concurrent requests")

    def dispatch(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request``: the first fault that answers, else :meth:`handle`; and record it.

        With a :attr:`latency`, the answer leaves only after its wait, which holds no lock; the
        request counts as in flight from its arrival until then. Whether it is over
        :attr:`max_concurrent` is decided as it arrives, in the same step that counts it, against
        the requests admitted before it: a refused one does not count against those after it.
        """
        limit = self.max_concurrent
        with self._lock:
            self._in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self._in_flight)
            refused = limit is not None and self._admitted >= limit
            self._admitted += not refused
        try:
            response, wait = self._answer(request, refused=refused)
            if wait > 0:
                time.sleep(wait)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._admitted -= not refused
        return response

    def _answer(self, request: httpx.Request, *, refused: bool) -> tuple[httpx.Response, float]:
        """Answer ``request`` under the lock; return the answer and how long it takes to leave."""
        with self._lock:
            response = None
            if refused:
                response = self.concurrency_refusal(request)
            for fault in self._faults if response is None else ():
                response = fault(request)
                if response is not None:
                    break
            if response is None:
                response = self.handle(request)
            if "date" not in response.headers:
                # Every HTTP server dates its answers (RFC 9110 6.6.1), by its own clock.
                response.headers["Date"] = format_datetime(self.now(), usegmt=True)
            headers = {
                name: "***" if name.lower() in _SECRET_HEADERS else value
                for name, value in request.headers.items()
            }
            self.requests.append(
                RecordedRequest(request.method, str(request.url), headers, response.status_code)
            )
            return response, self._wait(response)

    def _wait(self, response: httpx.Response) -> float:
        """Return how long ``response`` takes to leave, by :attr:`latency` (under the lock)."""
        latency = self.latency
        if latency is None:
            return 0.0
        if self._draws is None or self._draws[0] != latency.seed:
            self._draws = (latency.seed, random.Random(latency.seed))
        records = self.records_in(response) if latency.per_record else 0
        return latency.seconds(records, self._draws[1].random())

    def transport(self) -> httpx.MockTransport:
        """Return an httpx transport that answers from this fake without any socket."""
        return httpx.MockTransport(self.dispatch)

    @contextmanager
    def serve(self, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve this fake over HTTP; yield its base URL.

        Args:
            host: The address to listen on: loopback by default, so nothing outside the machine
                reaches the fake.
            port: The port; a free one (chosen by the system) when 0.

        Raises:
            OSError: The address cannot be listened on (the port is taken, say).
        """
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle's algorithm on, loopback
            # answers then wait ~40 ms for a delayed acknowledgement each.
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                # The address the client asked for, as a server reads it from the Host header:
                # answers that name the server (Salesforce's instance_url) name it the same way.
                authority = self.headers.get("Host") or ""
                if not _AUTHORITY.fullmatch(authority):
                    authority = f"{host}:{port}"
                request = httpx.Request(
                    self.command,
                    f"http://{authority}{self.path}",
                    headers=list(self.headers.items()),
                    content=body,
                )
                response = fake.dispatch(request)
                content = response.read()
                # Not send_response(), which would add a second Date from this machine's clock.
                self.log_request(response.status_code)
                self.send_response_only(response.status_code)
                self.send_header("Server", self.version_string())
                for name, value in response.headers.items():
                    if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                """Stay quiet: tests read :attr:`FakeVendor.requests` instead."""

        server = _Server((host, port), Handler)
        port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-vendor",
            daemon=True,
        )
        thread.start()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
