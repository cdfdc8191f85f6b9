"""How long each vendor account is held back by its throttles, in Redis, for every worker at once.

One key per account holds the end of its hold, in Redis's own clock (``TIME`` inside the script),
and expires at that end, so workers whose clocks disagree still wait alike and a hold needs no
cleaning up. A hold never shortens one already there: the script keeps the later end, atomically,
so two workers throttled at once leave the longer wait whatever order their writes arrive in.

The holds only spare the vendor refusals it would send anyway: when Redis cannot be reached, a
connector goes on without them (and is refused, and waits, as it would alone), logging a warning.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import redis

from incsync.protocols import AccountHolds

__all__ = ["RedisAccountHolds"]

logger = logging.getLogger("incsync")

_HOLD = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local wait = tonumber(ARGV[1])
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if held >= now + wait then
  return 0
end
redis.call('SET', KEYS[1], now + wait, 'PX', wait)
return 1
"""


class RedisAccountHolds(AccountHolds):
    """The :class:`~incsync.protocols.AccountHolds` of every process on one Redis.

    Args:
        client: A Redis client (``redis.Redis.from_url(url)``).
        prefix: Prefix of the Redis keys.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "incsync") -> None:
        self._client = client
        self._prefix = prefix
        self._hold = client.register_script(_HOLD)

    def _key(self, account: str) -> str:
        return f"{self._prefix}:held:{account}"

    def hold(self, account: str, wait: timedelta) -> None:
        """Hold ``account`` back for ``wait`` from now (by Redis's clock), unless it is longer."""
        millis = int(wait.total_seconds() * 1000)
        if millis < 1:
            return
        try:
            self._hold([self._key(account)], [millis])
        except redis.RedisError as error:
            logger.warning(
                "account %s: could not share a throttle's wait in Redis (%s); other workers "
                "may be refused before it ends",
                account,
                type(error).__name__,
            )

    def remaining(self, account: str) -> timedelta:
        """Return how much longer ``account`` is held back; zero when it is not (or unknown)."""
        try:
            millis = int(self._client.pttl(self._key(account)))
        except redis.RedisError as error:
            logger.warning(
                "account %s: could not read its shared throttle wait in Redis (%s); going on",
                account,
                type(error).__name__,
            )
            return timedelta(0)
        # -2: no hold; -1 cannot happen (every hold expires), and counts as none.
        return timedelta(milliseconds=max(millis, 0))
