"""A counting semaphore in Redis, so a vendor account's concurrency limit holds across machines.

Each account is a sorted set of slot tokens scored by their expiry, in Redis's own clock (``TIME``
inside the scripts), so workers whose clocks disagree still agree on who holds a slot. A slot
expires unless renewed: a worker killed mid-cycle frees its slot after ``ttl`` at the latest. The
scripts run atomically in Redis, so two workers can never both take the last slot.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import attrs
import redis

from incsync.errors import ConfigurationError, StoreError

__all__ = ["AccountSlot", "AccountSlots"]

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

_ACQUIRE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""
)

_RENEW = (
    _NOW_MS
    + """
local expires = redis.call('ZSCORE', KEYS[1], ARGV[2])
if expires and tonumber(expires) > now then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
  end
  return 1
end
return 0
"""
)


@attrs.frozen
class AccountSlot:
    """One held slot of an account's semaphore.

    Args:
        account_key: The vendor account.
        token: Identifies this holder among the account's slots.
    """

    account_key: str
    token: str


def _milliseconds(ttl: timedelta) -> int:
    millis = int(ttl.total_seconds() * 1000)
    if millis < 1:
        raise ConfigurationError(f"a slot's ttl must be positive, got {ttl}")
    return millis


class AccountSlots:
    """At most ``limit`` slots per account, shared by every process on one Redis.

    Args:
        client: A Redis client (``redis.Redis.from_url(url)``).
        limit: Slots per account.
        prefix: Prefix of the Redis keys.

    Raises:
        ConfigurationError: ``limit`` is not a positive integer.
    """

    def __init__(self, client: redis.Redis, limit: int, *, prefix: str = "incsync") -> None:
        if limit < 1:
            raise ConfigurationError(f"per-account limit must be an integer >= 1, got {limit!r}")
        self._client = client
        self._limit = limit
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    def _key(self, account_key: str) -> str:
        return f"{self._prefix}:account:{account_key}"

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except redis.RedisError as error:
            raise StoreError(
                f"Redis failed to {what} ({type(error).__name__}); check that Redis is reachable "
                "at the URL the deployment gives"
            ) from None

    def acquire(self, account_key: str, ttl: timedelta) -> AccountSlot | None:
        """Take a slot of the account for ``ttl``, or return ``None`` when all are held.

        Raises:
            StoreError: Redis failed.
        """
        token = uuid.uuid4().hex
        args = [self._limit, _milliseconds(ttl), token]
        taken = self._call("take an account slot", self._acquire, [self._key(account_key)], args)
        return AccountSlot(account_key, token) if taken == 1 else None

    def renew(self, slot: AccountSlot, ttl: timedelta) -> bool:
        """Extend the slot by ``ttl`` from now; ``False`` if it had already expired.

        Raises:
            StoreError: Redis failed.
        """
        key, args = self._key(slot.account_key), [_milliseconds(ttl), slot.token]
        return bool(self._call("renew an account slot", self._renew, [key], args) == 1)

    def release(self, slot: AccountSlot) -> None:
        """Give the slot back (a no-op once it has expired).

        Raises:
            StoreError: Redis failed.
        """
        client = self._client
        self._call("release an account slot", client.zrem, self._key(slot.account_key), slot.token)

    def held(self, account_key: str) -> int:
        """Return how many slots of the account are held, expired ones included until reaped.

        Raises:
            StoreError: Redis failed.
        """
        return int(self._call("count account slots", self._client.zcard, self._key(account_key)))
