"""Where the connector benchmark's fake vendor runs, and how long it takes to answer.

A real vendor answers from another machine: its work costs the client nothing but the wait. A
fake served from a thread of the benchmark's own process is not like that. Its request handling
takes the client's GIL between requests, and its whole dataset (20,000 records as dicts) sits in
the client's heap, where every full garbage collection the client triggers walks it. Both charge
the side that allocates more (the connector, which builds records) for the server's existence.

:func:`serve_apart` forks a child that takes the loaded fake with it and serves it over loopback
HTTP; the parent only ever talks HTTP to it, plus a pipe that switches request recording on and
off. :func:`serve_here` keeps the in-process thread (``--server thread``) for comparison.
Anything that changes the fake (issuing tokens, loading records) must happen before serving: the
child has its own copy from the moment it starts.

A real vendor also takes its time: every answer comes after a network round trip and the
vendor's own work, 100-500 ms a request. Both servers take a ``latency`` (seconds) that the
fake waits before it answers each request, whoever sent it, so the connector and the bare loop
wait alike. The wait is a sleep in the server, which costs the client no CPU; the fake's own
work on the request comes on top of it.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

import httpx

from incsync.testing.fakes import FakeVendor

__all__ = ["SERVERS", "Sent", "Serve", "Served", "serve_apart", "serve_here", "server"]

# Request headers that shape the answer; the bare loop sends them as the connector did. Xero's
# filter travels in If-Modified-Since.
_KEPT_HEADERS = frozenset({"accept", "content-type", "sforce-query-options", "if-modified-since"})
_START_WAIT_SECONDS = 30.0
_STOP_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Sent:
    """One request as the connector sent it (credentials are not kept; the bare loop has them)."""

    method: str
    url: str
    content: bytes
    headers: dict[str, str]


class Served(Protocol):
    """A fake being served: its base URL and a switch for recording the requests it receives."""

    @property
    def base_url(self) -> str:
        """The fake's loopback URL."""

    def record(self) -> None:
        """Start recording every request the fake receives."""

    def recorded(self) -> list[Sent]:
        """Stop recording; return the requests received since :meth:`record`, in order."""


class _Front:
    """The fake's front: waits ``latency`` seconds before every answer, and records on demand.

    It is one observing fault on the fake, added once and never removed: it answers nothing
    itself, so the fake answers every request after the wait.
    """

    def __init__(self, fake: FakeVendor, latency: float) -> None:
        if latency < 0:
            raise ValueError(f"latency must not be negative, got {latency}")
        self._latency = latency
        self._sent: list[Sent] | None = None
        fake.add_fault(self._observe)

    def _observe(self, request: httpx.Request) -> httpx.Response | None:
        if self._latency:
            time.sleep(self._latency)
        if self._sent is not None:
            headers = {k: v for k, v in request.headers.items() if k.lower() in _KEPT_HEADERS}
            self._sent.append(Sent(request.method, str(request.url), request.content, headers))
        return None

    def record(self) -> None:
        self._sent = []

    def recorded(self) -> list[Sent]:
        sent, self._sent = self._sent or [], None
        return sent


@dataclass
class _Here:
    base_url: str
    front: _Front

    def record(self) -> None:
        self.front.record()

    def recorded(self) -> list[Sent]:
        return self.front.recorded()


@dataclass
class _Apart:
    base_url: str
    pipe: Connection

    def record(self) -> None:
        self.pipe.send("record")
        self.pipe.recv()

    def recorded(self) -> list[Sent]:
        self.pipe.send("recorded")
        sent: list[Sent] = self.pipe.recv()
        return sent


@contextmanager
def serve_here(fake: FakeVendor, *, latency: float = 0.0) -> Iterator[Served]:
    """Serve ``fake`` from a thread of this process (the client's GIL and heap).

    Every answer waits ``latency`` seconds first.
    """
    front = _Front(fake, latency)
    with fake.serve() as base_url:
        yield _Here(base_url, front)


def _child(handed_over: list[FakeVendor], latency: float, pipe: Connection) -> None:
    fake = handed_over.pop()
    front = _Front(fake, latency)
    with fake.serve() as base_url:
        pipe.send(base_url)
        while True:
            command = pipe.recv()
            if command == "record":
                front.record()
                pipe.send(None)
            elif command == "recorded":
                pipe.send(front.recorded())
            else:
                return


@contextmanager
def serve_apart(fake: FakeVendor, *, latency: float = 0.0) -> Iterator[Served]:
    """Serve ``fake`` from a forked child process until the block ends.

    The child takes the fake with it: once it runs, this process holds no reference to the fake
    (the caller should drop its own), so the vendor's dataset is not in the client's heap. Every
    answer waits ``latency`` seconds first.
    """
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    handed_over = [fake]
    del fake  # the generator's frame would otherwise keep it alive for the whole run
    process = context.Process(
        target=_child, args=(handed_over, latency, theirs), name="fake-vendor", daemon=True
    )
    process.start()
    handed_over.clear()
    try:
        if not ours.poll(_START_WAIT_SECONDS):
            raise RuntimeError("the fake vendor's process did not start serving in time")
        yield _Apart(ours.recv(), ours)
    finally:
        ours.send("stop")
        process.join(_STOP_WAIT_SECONDS)
        if process.is_alive():
            process.terminate()
            process.join()


Serve = Callable[[FakeVendor], AbstractContextManager[Served]]
"""Serves a fake while the returned context is open: :func:`serve_apart` or :func:`serve_here`,
with the latency given to :func:`server`."""

_PLACES = {"process": serve_apart, "thread": serve_here}

SERVERS = tuple(_PLACES)
"""Where a fake can run: ``"process"`` (:func:`serve_apart`), ``"thread"`` (:func:`serve_here`)."""


def server(place: str, latency: float) -> Serve:
    """Return what serves a fake from ``place`` (see :data:`SERVERS`), ``latency`` s an answer."""
    serve = _PLACES[place]

    def serve_with_latency(fake: FakeVendor) -> AbstractContextManager[Served]:
        return serve(fake, latency=latency)

    return serve_with_latency
