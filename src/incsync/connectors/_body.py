"""Reading response bodies within a size limit, and quoting them safely in error messages."""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

from incsync.connectors._counts import header_count
from incsync.errors import BadResponseError
from incsync.redaction import redact

__all__ = [
    "body_excerpt",
    "read_capped",
    "refuse_declared_oversize",
]

EXCERPT_CHARS = 300
_WHITESPACE = re.compile(r"\s+")


def read_capped(response: httpx.Response, limit: int, secrets: Iterable[str] = ()) -> bytes:
    """Return ``response``'s decoded body, refusing to hold more than ``limit`` bytes of it.

    The declared ``Content-Length`` is checked first, so an oversized answer is refused before any
    of it is read; the count runs over decoded bytes, so a compressed body cannot expand past the
    limit either.

    Raises:
        BadResponseError: The body is larger than ``limit``.
        httpx.HTTPError: Reading failed (the caller translates it).
    """
    refuse_declared_oversize(response, limit, secrets)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(response, limit, secrets)
        chunks.append(chunk)
    return b"".join(chunks)


def refuse_declared_oversize(
    response: httpx.Response, limit: int, secrets: Iterable[str] = ()
) -> None:
    """Refuse ``response`` when its ``Content-Length`` already says it exceeds ``limit`` bytes.

    Raises:
        BadResponseError: The declared size is over the limit.
    """
    declared = header_count(response.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise _too_large(response, limit, secrets)


def _too_large(response: httpx.Response, limit: int, secrets: Iterable[str]) -> BadResponseError:
    url = redact(str(response.request.url.copy_with(query=None)), secrets)
    return BadResponseError(
        f"the response from {response.request.method} {url} is larger than the "
        f"{limit:,}-byte limit; ask for smaller pages or raise max_response_bytes",
        status_code=response.status_code,
    )


def body_excerpt(content: bytes, secrets: Iterable[str] = ()) -> str:
    """Return the start of a body as one line of text with secrets masked, for error messages."""
    text = content[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    # Masked before it is cut, so a secret at the cut cannot leave half of itself behind.
    text = redact(_WHITESPACE.sub(" ", text).strip(), secrets).removesuffix("…")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"
