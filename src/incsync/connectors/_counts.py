"""Reading counts out of a source's answers, the same way for every connector.

:func:`counted` reads a count of live records, which must be there; :func:`announced_total`
reads how many rows a query's whole answer holds, which serves only progress and may be absent;
:func:`header_count` reads a count a header holds (a size, a number of rows, requests left).
"""

from __future__ import annotations

from incsync.errors import BadResponseError

__all__ = ["announced_total", "counted", "header_count"]


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


def announced_total(value: object) -> int | None:
    """Return ``value`` as the number of rows a query's whole answer holds, or ``None``.

    HubSpot's search ``total`` and Salesforce's ``totalSize`` say it with every answer. It only
    feeds progress (a bar, an estimate of the time left), so an answer without a usable one
    reads on without a total rather than fail the read.

    Args:
        value: What the answer holds where the total should be.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def header_count(value: str | None) -> int | None:
    """Return the whole number of zero or more a header holds, or ``None`` when it holds none.

    Only ASCII digits make a count: ``str.isdigit`` also takes characters such as ``"²"``,
    which ``int`` refuses, and a header decoded as Latin-1 can hold one.

    Args:
        value: The header's value, or ``None`` when it was absent.
    """
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None
