"""Pipedrive's wire formats for the fake: error bodies, RFC 3339 seconds, opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timedelta

import httpx

from incsync.timestamps import UTC, ensure_utc, to_micros

__all__ = [
    "CDN_PAGE",
    "ERROR_INFO",
    "RefusalError",
    "decode_cursor",
    "encode_cursor",
    "failure",
    "invalid",
    "parse_time",
    "rfc3339",
    "seconds",
    "unauthorized",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ERROR_INFO = "Please check developers.pipedrive.com"
# RFC 3339 to the second, with Z or a numeric offset; v2 refuses fractions of a second.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})", re.IGNORECASE)
CDN_PAGE = (
    '<!DOCTYPE html>\n<html lang="en-US">\n<head><title>Attention Required! | Cloudflare</title>'
    "</head>\n<body>\n<h1>Sorry, you have been blocked</h1>\n<h2>You are unable to access "
    "pipedrive.com</h2>\n<p>This website is using a security service to protect itself from "
    "online attacks.</p>\n<p>Cloudflare Ray ID: <strong>{ray}</strong></p>\n</body>\n</html>\n"
)


class RefusalError(Exception):
    """Ends a request early with the answer Pipedrive would give."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def failure(status: int, error: str, **extra: object) -> httpx.Response:
    """Return Pipedrive's error answer: ``{"success": false, "error": ..., **extra}``."""
    return httpx.Response(status, json={"success": False, "error": error, **extra})


def invalid(message: str) -> RefusalError:
    """Return the 400 v2's input validation answers with, as an exception to raise."""
    return RefusalError(
        failure(
            400,
            f"Validation failed: {message}",
            code="ERR_SCHEMA_VALIDATION_FAILED",
            error_info=ERROR_INFO,
            data=None,
            additional_data=None,
        )
    )


def unauthorized() -> RefusalError:
    """Return the 401 for missing, wrong or expired credentials, as an exception to raise."""
    return RefusalError(failure(401, "unauthorized access", errorCode=401, error_info=ERROR_INFO))


def seconds(moment: datetime, field: str) -> int:
    """Return whole seconds since the epoch for an aware ``moment`` (Pipedrive's precision)."""
    return to_micros(ensure_utc(moment, field)) // 1_000_000


def rfc3339(epoch_seconds: int) -> str:
    """Return ``epoch_seconds`` as v2 writes times: ``2024-01-01T00:00:00Z``."""
    return f"{_EPOCH + timedelta(seconds=epoch_seconds):%Y-%m-%dT%H:%M:%S}Z"


def parse_time(value: str, name: str) -> int:
    """Read an RFC 3339 query value to the second, refusing fractions and other forms.

    Raises:
        RefusalError: The value is not RFC 3339 to the second (a 400).
    """
    if not _RFC3339.fullmatch(value):
        raise invalid(
            f"{name}: '{value}' is not a valid datetime; use RFC 3339 to the second, "
            f"e.g. 2025-01-01T10:20:00Z"
        )
    parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return seconds(parsed, name)


def encode_cursor(field: str, value: int, direction: str, deal_id: int) -> str:
    """Return the opaque cursor for the position after a deal: base64url JSON, as Pipedrive's."""
    shown: int | str = value if field == "id" else rfc3339(value)
    text = json.dumps(
        {"field": field, "fieldValue": shown, "sortDirection": direction, "id": deal_id},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str, direction: str) -> tuple[int, int]:
    """Return the (sort value, id) a cursor points after.

    Raises:
        RefusalError: The cursor was not given out for this sort (a 400).
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        shown, deal_id = data["fieldValue"], data["id"]
        same_query = data["field"] == field and data["sortDirection"] == direction
        value = shown if field == "id" else parse_time(shown, "cursor")
        if not (same_query and isinstance(value, int) and isinstance(deal_id, int)):
            raise TypeError  # noqa: TRY301 - one refusal for every unusable cursor
    except (ValueError, TypeError, KeyError, UnicodeError, binascii.Error, RefusalError):
        raise invalid(
            "cursor: not a cursor this API gave out for this sort_by and sort_direction"
        ) from None
    return value, deal_id
