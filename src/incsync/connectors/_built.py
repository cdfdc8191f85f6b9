"""Records a connector built while paging, kept for its ``to_record`` to hand out."""

from __future__ import annotations

from incsync.records import Record

__all__ = ["BuiltRecords"]


class BuiltRecords:
    """The records built from the rows of the page being read, found again by the row itself.

    A connector whose paging reads every row's id and time (to find where the next page starts,
    or which rows were read already) can build each row's record from that same parse. It keeps
    them here for one page, and its ``to_record`` takes a row's record back instead of parsing
    the row again. A record is handed out only for the very row object it was built from (its
    payload): the record keeps that row alive, so no other object can have its ``id()``.
    """

    __slots__ = ("_by_row",)

    def __init__(self) -> None:
        self._by_row: dict[int, Record] = {}

    def new_page(self) -> dict[int, Record]:
        """Forget the last page's records; return the mapping to fill, by ``id(row)``."""
        self._by_row = {}
        return self._by_row

    def take(self, raw: object) -> Record | None:
        """Return the record built from ``raw`` itself, or ``None``; it is handed out once.

        Handing each record out once leaves nothing of a page here after it has been built, so
        this holds no page while the next one is fetched.
        """
        record = self._by_row.pop(id(raw), None)
        return record if record is not None and record.payload is raw else None
