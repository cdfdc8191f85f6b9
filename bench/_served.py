"""Where the connector benchmark's fake vendor runs: in a child process (default) or a thread.

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
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

import httpx

from incsync.testing.fakes import FakeVendor

__all__ = ["SERVERS", "Sent", "Serve", "Served", "serve_apart", "serve_here"]

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


class _Recorder:
    """Records requests through an observing fault on the fake (which answers nothing itself)."""

    def __init__(self, fake: FakeVendor) -> None:
        self._fake = fake
        self._sent: list[Sent] = []

    def _observe(self, request: httpx.Request) -> httpx.Response | None:
        headers = {k: v for k, v in request.headers.items() if k.lower() in _KEPT_HEADERS}
        self._sent.append(Sent(request.method, str(request.url), request.content, headers))
        return None

    def record(self) -> None:
        self._sent = []
        self._fake.add_fault(self._observe)

    def recorded(self) -> list[Sent]:
        self._fake.clear_faults()
        return self._sent


@dataclass
class _Here:
    base_url: str
    recorder: _Recorder

    def record(self) -> None:
        self.recorder.record()

    def recorded(self) -> list[Sent]:
        return self.recorder.recorded()


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
def serve_here(fake: FakeVendor) -> Iterator[Served]:
    """Serve ``fake`` from a thread of this process (the client's GIL and heap)."""
    with fake.serve() as base_url:
        yield _Here(base_url, _Recorder(fake))


def _child(handed_over: list[FakeVendor], pipe: Connection) -> None:
    fake = handed_over.pop()
    recorder = _Recorder(fake)
    with fake.serve() as base_url:
        pipe.send(base_url)
        while True:
            command = pipe.recv()
            if command == "record":
                recorder.record()
                pipe.send(None)
            elif command == "recorded":
                pipe.send(recorder.recorded())
            else:
                return


@contextmanager
def serve_apart(fake: FakeVendor) -> Iterator[Served]:
    """Serve ``fake`` from a forked child process until the block ends.

    The child takes the fake with it: once it runs, this process holds no reference to the fake
    (the caller should drop its own), so the vendor's dataset is not in the client's heap.
    """
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    handed_over = [fake]
    del fake  # the generator's frame would otherwise keep it alive for the whole run
    process = context.Process(
        target=_child, args=(handed_over, theirs), name="fake-vendor", daemon=True
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
"""Serves a fake while the returned context is open: :func:`serve_apart` or :func:`serve_here`."""

SERVERS: dict[str, Serve] = {"process": serve_apart, "thread": serve_here}
