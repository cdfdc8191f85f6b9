"""Keeping secrets out of logs, error messages and the state store.

Every error message the engine stores or logs passes through :func:`redact`: first the exact
credential values the connector declares, then the shapes secrets take in URLs, headers and JSON
bodies, so a token leaks neither when a connector forgot to declare it nor when a vendor echoes it.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable

__all__ = ["MASK", "redact", "redact_lines", "redacted_traceback"]

MASK = "***"
_MAX_MESSAGE_CHARS = 1_000
# Secrets shorter than this are too likely to match ordinary text to be masked verbatim.
_MIN_SECRET_CHARS = 4

_SECRET_NAMES = (
    r"access[_-]?token|refresh[_-]?token|id[_-]?token|client[_-]?secret|api[_-]?key|apikey|"
    r"api[_-]?token|password|passwd|secret|token|authorization|x-api-key"
)
# Words that messages put after "token:" or "password:" ("token: expired", "password: must be
# longer", "refresh_token: fix the scopes"). Only these are kept after a colon; any other value is
# masked, however plain it looks, because an undeclared password is often a plain word.
_MESSAGE_WORDS = frozenset(
    {
        "a", "an", "the", "is", "was", "are", "were", "has", "had", "have", "must", "should",
        "not", "no", "none", "null", "missing", "required", "empty", "expired", "revoked",
        "invalid", "unknown", "wrong", "bad", "malformed", "rejected", "refused", "denied",
        "fix", "check", "see", "set", "unset", "please", "try", "use", "too", "ok",
    }
)  # fmt: skip
# A secret's name may carry a prefix: oauth_token, DB_PASSWORD, stripe_api_key.
_NAME = rf"(?:[A-Za-z0-9]+[_-])*(?:{_SECRET_NAMES})"
_PATTERNS = (
    # Authorization: Bearer abc / Basic abc / Token abc; the last two only when what follows
    # looks encoded (has a digit or "="), so "Basic plan" and "token provided" stay readable.
    re.compile(
        r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"
        r"|\b(basic|token)\s+(?=[A-Za-z0-9._~+/=-]*[0-9=])[A-Za-z0-9._~+/=-]{8,}"
    ),
    # name=value in query strings, forms and reprs (value quoted or not), name: value in headers
    re.compile(rf"(?i)(?<![A-Za-z0-9])({_NAME})(\s*[=:]\s*)([\"']?)([^\s&,;\"']+)"),
    # "name": "value" in JSON
    re.compile(rf"(?i)([\"']{_NAME}[\"']\s*:\s*[\"'])[^\"']*"),
    # scheme://user:password@host
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/\s@]+:)[^@/\s]+(@)"),
)


def _masked_pair(match: re.Match[str]) -> str:
    name, separator, quote, value = match.groups()
    if separator.strip() == ":" and not quote and value.lower() in _MESSAGE_WORDS:
        return match.group(0)  # prose about the secret ("token: expired"), not its value
    return f"{name}{separator}{quote}{MASK}"


def _mask_pattern(text: str) -> str:
    bearer, pair, json_pair, url = _PATTERNS
    text = bearer.sub(lambda m: f"{m.group(1) or m.group(2)} {MASK}", text)
    text = pair.sub(_masked_pair, text)
    text = json_pair.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return url.sub(lambda m: f"{m.group(1)}{MASK}{m.group(2)}", text)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with credential values masked and its length bounded.

    Args:
        text: A message that may contain secrets (an exception's text, a response excerpt).
        secrets: Exact values to mask wherever they appear (tokens, keys, passwords).

    Returns:
        The text with every secret replaced by ``***``, cut to 1,000 characters.
    """
    for secret in sorted(
        (s for s in secrets if len(s) >= _MIN_SECRET_CHARS), key=len, reverse=True
    ):
        text = text.replace(secret, MASK)
    text = _mask_pattern(text)
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "…"
    return text


def redact_lines(text: str, secrets: Iterable[str] = ()) -> str:
    """Return many-line text (a traceback) with each line redacted and the line breaks kept.

    :func:`redact` bounds a message to one screenful; a traceback is longer by nature, so each of
    its lines is masked and bounded on its own instead.

    Args:
        text: Lines that may contain secrets.
        secrets: Exact values to mask wherever they appear.

    Returns:
        The lines, each as :func:`redact` returns it.
    """
    return "\n".join(redact(line, secrets) for line in text.split("\n"))


def redacted_traceback(error: BaseException, secrets: Iterable[str] = ()) -> str:
    """Return the traceback of ``error`` (its chained causes included), redacted line by line.

    For an exception that is no incsync error, a bug one line would not locate; its message is
    masked like every error text (see :func:`redact_lines`).

    Args:
        error: An exception that was raised.
        secrets: Exact values to mask wherever they appear.
    """
    return redact_lines("".join(traceback.format_exception(error)).rstrip("\n"), secrets)
