"""How often the console's secret may be tried: token buckets per client address and overall.

Each try at signing in takes a token from the bucket of the address it comes from and one from
the console's own; an empty bucket refuses the try, with how long until it holds a token again
(the 429's ``Retry-After``). The address's bucket slows one guesser; the console's caps guesses
from many addresses together, and from behind a proxy, where every try has the proxy's address.
The buckets are pure values (:class:`Bucket`, :func:`refilled`); :class:`SignInThrottle` keeps
them for one console, in memory: a restart forgets them, which costs a guesser more than it gains.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import attrs

__all__ = ["OVERALL", "PER_ADDRESS", "Bucket", "Rate", "SignInThrottle", "refilled", "wait"]


@attrs.frozen
class Rate:
    """How many tries a bucket allows at once, and how fast it earns them back.

    Args:
        burst: Tries allowed in a row, and the most the bucket holds.
        every: One try is earned back each time this passes.
    """

    burst: int
    every: timedelta


PER_ADDRESS = Rate(burst=5, every=timedelta(seconds=20))
"""Five tries from one address, then one every 20 seconds: room for a few typing mistakes."""

OVERALL = Rate(burst=30, every=timedelta(seconds=2))
"""Thirty tries from all addresses together, then one every 2 seconds."""


@attrs.frozen
class Bucket:
    """The tries a bucket holds (a fraction while it refills) as of an instant."""

    tokens: float
    at: datetime


def refilled(bucket: Bucket | None, rate: Rate, now: datetime) -> Bucket:
    """Return the bucket as of ``now``: what it earned back since, never more than ``burst``.

    A bucket never used is full. A clock that went back earns nothing.
    """
    if bucket is None:
        return Bucket(float(rate.burst), now)
    earned = max(0.0, (now - bucket.at) / rate.every)
    return Bucket(min(float(rate.burst), bucket.tokens + earned), now)


def wait(bucket: Bucket, rate: Rate) -> timedelta:
    """Return how long until a refilled bucket holds a whole try (zero when it does)."""
    return max(timedelta(0), rate.every * (1.0 - bucket.tokens))


class SignInThrottle:
    """The sign-in buckets of one console: one per client address and one for all of them.

    Safe to share between threads: the handlers run in a thread pool.
    """

    def __init__(self, per_address: Rate = PER_ADDRESS, overall: Rate = OVERALL) -> None:
        self.per_address = per_address
        self.overall = overall
        self._lock = threading.Lock()
        self._addresses: dict[str, Bucket] = {}
        self._all: Bucket | None = None

    def take(self, address: str, now: datetime) -> timedelta | None:
        """Take a try for ``address``: ``None`` when it may go ahead, else how long to wait.

        A refused try takes nothing, so waiting the time given is enough.
        """
        with self._lock:
            mine = refilled(self._addresses.get(address), self.per_address, now)
            everyone = refilled(self._all, self.overall, now)
            longest = max(wait(mine, self.per_address), wait(everyone, self.overall))
            if longest > timedelta(0):
                return longest
            self._addresses[address] = attrs.evolve(mine, tokens=mine.tokens - 1)
            self._all = attrs.evolve(everyone, tokens=everyone.tokens - 1)
            # A full bucket is the same as none. The overall rate bounds how many addresses
            # can have tried within one refill, so this keeps the dict small.
            self._addresses = {
                key: bucket
                for key, bucket in self._addresses.items()
                if refilled(bucket, self.per_address, now).tokens < self.per_address.burst
            }
            return None
