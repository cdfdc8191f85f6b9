"""Reading a source's count of live records out of an answer, the same way for every connector."""

from __future__ import annotations

from incsync.errors import BadResponseError

__all__ = ["counted"]


def counted(value: object, *, vendor: str, where: str) -> int:
    """Return ``value`` as a count of live records, as a connector's ``count_live`` reports it.

    Args:
        value: What the answer holds where the count should be.
        vendor: The source's name, for the error message.
        where: Where in which answer the count was looked for (``"the search answer's total"``).

    Raises:
        BadResponseError: ``value`` is not a whole number of zero or more (absent, text, a
            boolean, a fraction): the API changed or something else answered.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadResponseError(
            f"{vendor}: {where} is {value!r:.80}, not a count of records; the API changed or "
            f"something else answered",
            vendor=vendor,
        )
    return value
