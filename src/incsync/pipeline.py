"""Pages read one ahead of the writes: the next page is fetched while the current one is written.

A cycle spends most of its time waiting for the source: each request waits 100-500 ms on the
network and the vendor, and writing the page it brought takes some more. :func:`read_ahead` runs
the connector's read in a thread of its own, so the request for page N+1 is on its way while
page N is written and checkpointed. The engine reads every cycle this way (through
:func:`read_ahead_each`); there is no other path.

What it keeps of a sequential read:

* **One page ahead, no more.** The reading thread fetches page N+1 once the engine has taken
  page N, and hands it over only when the engine asks for it; it fetches nothing further until
  then. Memory holds the page being written and at most one fetched ahead, however long the read.
* **Errors surface where they would have.** A failed fetch of page N+1 is raised when the engine
  asks for page N+1, that is after page N is durable and its progress reported: the cursor never
  passes data that was not written, and page N is not lost to its successor's failure.
* **Nothing of a later page happens first.** Whatever the connector does that the host or a test
  can see (changing the source, a reset, a cancel: the hooks of the in-memory connector) waits in
  :func:`wait_for_previous_page` until the engine has finished page N (written, checkpointed,
  progress reported, stop and cancel checked): only the waiting on the network overlaps.
* **An abandoned read stops cleanly.** When the cycle ends early (stop, cancel, a reset, a lost
  lease, a failed write), the page in flight is dropped unwritten: the reading thread is told,
  a connector waiting in :func:`wait_for_previous_page` is unwound without running its hook, a
  fetch under way finishes (bounded by the request's timeouts) and the connector's generator is
  closed in the thread that ran it; :func:`read_ahead` returns only then, so no request of the
  cycle outlives it.

The reading thread runs in a copy of the cycle's context: its log lines carry the cycle's id, and
its requests are in the cycle's trace.

:func:`read_ahead_each` runs several such reads at once, one thread each (the time partitions of
a full read, :mod:`incsync.partitions`), and hands their pages to the one caller in the order
they arrive: each read keeps every promise above on its own (one page ahead, its hook waiting
for its own previous page, its error raised when its page is asked for), and abandoning the
whole abandons and joins every read. :func:`read_ahead` is that with one read.
"""

from __future__ import annotations

import collections
import contextvars
import threading
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

__all__ = ["Ended", "Reads", "read_ahead", "read_ahead_each", "wait_for_previous_page"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class _ReadAbandoned(BaseException):
    """Unwinds a connector waiting for a page the engine will not ask for (the read ended).

    A BaseException, so that no connector's ``except Exception`` takes it for a source error.
    """


class Ended:
    """What :class:`Reads` hands over in place of a page when one of its reads has no page left."""

    def __repr__(self) -> str:
        return "Ended()"


class _Failed:
    """The fetch raised ``error``; the engine gets it when it asks for the page."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_ENDED = Ended()
_EMPTY = object()
_ABANDONED = object()  # not None: a read may hand over None as any other item

_CURRENT: contextvars.ContextVar[_Handoff[object] | None] = contextvars.ContextVar(
    "incsync_read_ahead", default=None
)


class _Handoff(Generic[T]):
    """One reading thread and the engine, passing one page at a time.

    Its condition is shared by every read of one :class:`Reads`, so the engine waits for a page
    of any of them; a filled slot joins the queue ``filled``, in the order pages arrive.
    """

    def __init__(
        self,
        pages: Iterable[T],
        ready: threading.Condition,
        filled: collections.deque[_Handoff[T]],
    ) -> None:
        self._pages = iter(pages)
        self._ready = ready
        self._filled = filled
        self._slot: object = _EMPTY
        self._asked = 0  # how many pages the engine has asked for
        self._fetching = 0  # the number (from 0) of the page the reading thread is fetching
        self._abandoned = False
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._read,), name="incsync-read-ahead", daemon=True
        )

    # -- the reading thread ----------------------------------------------------------------------

    def _read(self) -> None:
        _CURRENT.set(self)  # type: ignore[arg-type]  # the thread's own copy of the context
        try:
            while True:
                item = self._fetch()
                if item is _ABANDONED:
                    return
                with self._ready:
                    self._slot = item
                    self._filled.append(self)
                    self._ready.notify_all()
                    while self._slot is not _EMPTY and not self._abandoned:
                        self._ready.wait()
                    if self._abandoned or isinstance(item, Ended | _Failed):
                        return
                    self._fetching += 1
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()

    def _fetch(self) -> object:
        """Return the next page, :data:`_ENDED`, a :class:`_Failed`, or :data:`_ABANDONED`."""
        try:
            return next(self._pages)
        except StopIteration:
            return _ENDED
        except _ReadAbandoned:
            return _ABANDONED
        except BaseException as error:  # noqa: BLE001 - handed to the engine, which raises it
            return _Failed(error)

    def wait_for_previous_page(self) -> None:
        with self._ready:
            while self._asked <= self._fetching and not self._abandoned:
                self._ready.wait()
            if self._abandoned:
                raise _ReadAbandoned

    # -- the engine (holding the shared condition) -----------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def ask(self) -> None:
        """Ask for the next page: the one before is finished (written, checkpointed)."""
        self._asked += 1
        self._ready.notify_all()

    def take(self) -> object:
        item, self._slot = self._slot, _EMPTY
        self._ready.notify_all()
        return item

    def abandon(self) -> None:
        with self._ready:
            self._abandoned = True
            self._ready.notify_all()
        self._thread.join()


class Reads(Generic[K, T]):
    """Several reads, each in a thread of its own, one page ahead of the one caller.

    Iterating yields ``(key, page)`` in the order pages arrive, and ``(key, Ended())`` once the
    read under ``key`` has no page left (it is then over; :meth:`add` may start another under
    the same key). A read's page is asked for (its hook released, its next fetch started) only
    when the caller comes back for the next item after taking the one before: by then that page
    is finished. A failed fetch is raised by the ``next()`` that takes its place, the reads
    before it intact. Iteration ends when no read is left.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._filled: collections.deque[_Handoff[T]] = collections.deque()
        self._running: dict[_Handoff[T], K] = {}
        self._every: list[_Handoff[T]] = []
        self._taken: _Handoff[T] | None = None

    def add(self, key: K, pages: Iterable[T]) -> None:
        """Start reading ``pages`` under ``key``; its first page is asked for at once."""
        handoff = _Handoff(pages, self._ready, self._filled)
        with self._ready:
            self._running[handoff] = key
            self._every.append(handoff)
            handoff.ask()
        handoff.start()

    def __iter__(self) -> Iterator[tuple[K, T | Ended]]:
        return self

    def __next__(self) -> tuple[K, T | Ended]:
        with self._ready:
            if self._taken is not None:
                self._taken.ask()
                self._taken = None
            if not self._running:
                raise StopIteration
            while not self._filled:
                self._ready.wait()
            handoff = self._filled.popleft()
            item = handoff.take()
            key = self._running[handoff]
            if isinstance(item, Ended | _Failed):
                del self._running[handoff]
            else:
                self._taken = handoff
        if isinstance(item, _Failed):
            raise item.error
        return key, item  # type: ignore[return-value]  # only pages and Ended are handed over

    def abandon(self) -> None:
        """Abandon every read and join its thread (a fetch under way finishes first)."""
        for handoff in self._every:
            handoff.abandon()


@contextmanager
def read_ahead_each(reads: Iterable[tuple[K, Iterable[T]]] = ()) -> Iterator[Reads[K, T]]:
    """Read each of ``reads`` in a thread of its own, one page ahead of the caller; see the module.

    The reading starts at once; more may be added while iterating (:meth:`Reads.add`). However
    the block ends, every read is abandoned and its thread joined before this returns.

    Args:
        reads: ``(key, pages)`` pairs: the keys tell the reads apart in what is handed over.

    Yields:
        The :class:`Reads`.
    """
    every: Reads[K, T] = Reads()
    try:
        for key, pages in reads:
            every.add(key, pages)
        yield every
    finally:
        every.abandon()


@contextmanager
def read_ahead(pages: Iterable[T]) -> Iterator[Iterator[T]]:
    """Read ``pages`` in a thread of its own, one page ahead of the caller; see the module.

    The reading starts at once. However the block ends, the read is abandoned and its thread
    joined before this returns: a fetch under way finishes first.

    Args:
        pages: The connector's pages (``connector.read(window)``).

    Yields:
        The pages, in order; a fetch's error is raised by the ``next()`` that asks for its page.
    """
    with read_ahead_each([(0, pages)]) as reads:
        yield (page for _, page in reads if not isinstance(page, Ended))


def wait_for_previous_page() -> None:
    """Return once the engine has finished the page before the one the caller is fetching.

    Call it from a connector's read, before doing anything the host or a test can observe and
    that a sequential read would do only after the previous page was durable: the in-memory
    connector's ``before_page`` hook, which may change the source or reset, cancel or stop the
    cycle. Waiting on the network before it is what overlaps with the write. Outside a read run
    by :func:`read_ahead` (a connector read directly), it returns at once.

    Raises:
        _ReadAbandoned: The cycle ended before asking for the page (a BaseException that the
            reading thread takes as the end of the read; connectors must let it through).
    """
    handoff = _CURRENT.get()
    if handoff is not None:
        handoff.wait_for_previous_page()
