"""The list mechanics of FakeStripe: entries kept newest first, and one page of a list request.

Every Stripe list (objects or events) pages the same way, so the fake keeps each as a
:class:`Listing` and answers with :func:`list_page`.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable
from typing import Any

import attrs
import httpx

__all__ = [
    "LIST_LIMIT_MAX",
    "Entry",
    "Listing",
    "RequestError",
    "error_response",
    "invalid",
    "list_page",
]

LIST_LIMIT_MAX = 100
"""The largest ``limit`` a list endpoint accepts."""

_CREATED_FILTERS = ("gt", "gte", "lt", "lte")


@attrs.define
class Entry:
    """One listed item (an object or an event): its body and its place in the list."""

    id: str
    created: int
    seq: int
    body: dict[str, Any]

    @property
    def key(self) -> tuple[int, int]:
        """Newest-first lists order by this key, descending."""
        return (self.created, self.seq)


class RequestError(Exception):
    """Ends a request early with the answer Stripe would give."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def error_response(status: int, message: str, kind: str, **extra: object) -> httpx.Response:
    """Return Stripe's error answer: ``{"error": {"message", "type", ...}}``."""
    return httpx.Response(status, json={"error": {"message": message, "type": kind, **extra}})


def invalid(message: str, param: str | None = None, code: str | None = None) -> RequestError:
    """Return the 400 ``invalid_request_error`` to raise, naming the parameter and code if any."""
    extra: dict[str, object] = {}
    if param is not None:
        extra["param"] = param
    if code is not None:
        extra["code"] = code
    return RequestError(error_response(400, message, "invalid_request_error", **extra))


class Listing:
    """Entries kept newest first, found by id; inserting keeps the order (created may repeat)."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []  # ascending by key; lists read it backwards
        self._keys: list[tuple[int, int]] = []
        self.by_id: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        """Insert ``entry`` in its place."""
        at = bisect.bisect(self._keys, entry.key)
        self._keys.insert(at, entry.key)
        self.entries.insert(at, entry)
        self.by_id[entry.id] = entry

    def extend_sorted(self, entries: list[Entry]) -> None:
        """Add many at once (bulk loads): one sort instead of many inserts."""
        self.entries.extend(entries)
        self.entries.sort(key=lambda entry: entry.key)
        self._keys = [entry.key for entry in self.entries]
        self.by_id.update((entry.id, entry) for entry in entries)

    def remove(self, object_id: str) -> None:
        """Take the entry with ``object_id`` out."""
        entry = self.by_id.pop(object_id)
        at = bisect.bisect_left(self._keys, entry.key)
        del self._keys[at], self.entries[at]

    def position(self, object_id: str, what: str, param: str) -> int:
        """Return where ``object_id`` is; a 400 ``resource_missing`` naming ``param`` if absent."""
        entry = self.by_id.get(object_id)
        if entry is None:
            raise invalid(f"No such {what}: '{object_id}'", param, "resource_missing")
        return bisect.bisect_left(self._keys, entry.key)


def list_page(
    url: str,
    items: Listing,
    what: str,
    params: httpx.QueryParams,
    wanted: Callable[[Entry], bool] | None,
) -> httpx.Response:
    """Answer one list request over ``items``, as Stripe pages every list.

    Args:
        url: The list's path, echoed as ``url``.
        items: The entries to list.
        what: The object's name in ``resource_missing`` messages.
        params: The query: ``limit``, ``starting_after`` / ``ending_before``, ``created`` filters.
        wanted: Keeps only the entries it accepts (the event type filter); all when ``None``.

    Returns:
        The 200 list object.

    Raises:
        RequestError: A parameter is invalid or names an object that does not exist.
    """
    limit = _limit(params.get("limit"))
    low, high = _created_bounds(params)
    after, before = params.get("starting_after"), params.get("ending_before")
    if after is not None and before is not None:
        raise invalid(
            "You may only specify one of these parameters: ending_before, starting_after."
        )
    entries = items.entries
    if before is not None:
        start = items.position(before, what, "ending_before") + 1
        picked = _scan(entries, range(start, len(entries)), low, high, wanted, limit + 1)
        has_more = len(picked) > limit
        data = list(reversed(picked[:limit]))
    else:
        top = items.position(after, what, "starting_after") if after is not None else len(entries)
        picked = _scan(entries, range(top - 1, -1, -1), low, high, wanted, limit + 1)
        has_more = len(picked) > limit
        data = picked[:limit]
    body = {
        "object": "list",
        "url": url,
        "has_more": has_more,
        "data": [copy.deepcopy(entry.body) for entry in data],
    }
    return httpx.Response(200, json=body)


def _scan(
    entries: list[Entry],
    indexes: range,
    low: int,
    high: int,
    wanted: Callable[[Entry], bool] | None,
    count: int,
) -> list[Entry]:
    """Collect up to ``count`` wanted entries within [low, high], walking ``indexes``."""
    picked: list[Entry] = []
    descending = indexes.step < 0
    for index in indexes:
        entry = entries[index]
        if entry.created > high:
            if descending:
                continue
            break
        if entry.created < low:
            if descending:
                break
            continue
        if wanted is None or wanted(entry):
            picked.append(entry)
            if len(picked) >= count:
                break
    return picked


def _limit(value: str | None) -> int:
    """Read ``limit``: 10 when absent, 1 to 100 otherwise."""
    if value is None:
        return 10
    if not value.isdigit() or not 1 <= int(value) <= LIST_LIMIT_MAX:
        raise invalid(
            f"Invalid integer: {value}. limit must be between 1 and {LIST_LIMIT_MAX}.", "limit"
        )
    return int(value)


def _created_bounds(params: httpx.QueryParams) -> tuple[int, int]:
    """Read ``created`` / ``created[op]`` into inclusive [low, high] seconds."""
    low, high = -(2**62), 2**62
    found = {op: params.get(f"created[{op}]") for op in _CREATED_FILTERS}
    exact = params.get("created")
    if exact is not None:
        found["gte"] = found["lte"] = exact
    for op, text in found.items():
        if text is None:
            continue
        if not text.lstrip("-").isdigit():
            raise invalid(f"Invalid integer: {text}", f"created[{op}]")
        value = int(text)
        if op in ("gt", "gte"):
            low = max(low, value + (op == "gt"))
        else:
            high = min(high, value - (op == "lt"))
    return low, high
