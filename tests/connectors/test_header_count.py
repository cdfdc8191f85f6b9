"""A count a header holds, read one way for every connector (content length, rows, requests)."""

from __future__ import annotations

import httpx
import pytest

from incsync.connectors._body import refuse_declared_oversize
from incsync.connectors._counts import header_count


@pytest.mark.parametrize(
    ("value", "count"),
    [
        ("0", 0),
        ("79", 79),
        (" 2 ", 2),
        (None, None),
        ("", None),
        ("-1", None),
        ("1.5", None),
        ("many", None),
        ("\u00b2", None),
        ("\u0663", None),
    ],
)
def test_a_header_count_is_ascii_digits_or_nothing(value: str | None, count: int | None) -> None:
    """A superscript or Arabic-Indic digit passes str.isdigit but is no count (int refuses "²")."""
    assert header_count(value) == count


def test_a_content_length_that_is_no_count_is_not_taken_for_one() -> None:
    """A Latin-1 "²" in Content-Length no longer raises ValueError: the body's cap decides."""
    response = httpx.Response(200, headers=[(b"content-length", b"\xb2")], content=b"")
    refuse_declared_oversize(response, 10)
