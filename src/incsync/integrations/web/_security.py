"""The console's defences for requests that change something: CSRF tokens, origins, sign-in.

A state-changing request must come from a page of the console itself (its ``Origin``, or its
``Referer`` when a browser sends no origin, is the console's own or one the host allows), must
carry the CSRF token of the browser's cookie (a token signed with the console's key, so a page
on another site can neither read nor forge it), and must be allowed by the host's authorization.
:class:`SignedName` is the signed cookie that ``incsync serve``'s sign-in gives a person who knew
the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Collection
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import attrs

from incsync.actions import check_actor
from incsync.errors import ConfigurationError
from incsync.integrations._console_secret import check_secret

__all__ = [
    "ConsoleKeys",
    "SignedName",
    "csrf_token",
    "new_nonce",
    "origin_of",
    "same_origin",
    "valid_csrf",
]


@attrs.frozen(repr=False)
class ConsoleKeys:
    """The keys that sign the console's CSRF tokens and sign-in cookies.

    Args:
        csrf: Signs CSRF tokens.
        sign_in: Signs the sign-in cookie.
    """

    csrf: bytes
    sign_in: bytes

    @classmethod
    def from_secret(cls, secret: str) -> ConsoleKeys:
        """Derive both keys from one secret, so every process given it accepts the others' tokens.

        Raises:
            ConfigurationError: The secret is shorter than
                :data:`~incsync.integrations._console_secret.MINIMUM_SECRET_LENGTH`.
        """
        key = check_secret(secret).encode("utf-8")
        return cls(
            csrf=hmac.digest(key, b"incsync console csrf", hashlib.sha256),
            sign_in=hmac.digest(key, b"incsync console sign-in", hashlib.sha256),
        )

    def matches(self, given: bytes) -> bool:
        """Whether ``given`` is the secret these keys were derived from (in constant time)."""
        derived = hmac.digest(given, b"incsync console csrf", hashlib.sha256)
        return hmac.compare_digest(derived, self.csrf)

    @classmethod
    def random(cls) -> ConsoleKeys:
        """Keys of this process only: tokens do not survive a restart, nor reach other workers."""
        return cls(csrf=secrets.token_bytes(32), sign_in=secrets.token_bytes(32))


def new_nonce() -> str:
    """Return a fresh random value for a browser's CSRF cookie."""
    return secrets.token_urlsafe(32)


def csrf_token(keys: ConsoleKeys, nonce: str) -> str:
    """Return the CSRF token that goes with a browser's cookie ``nonce``."""
    return hmac.new(keys.csrf, nonce.encode("utf-8"), hashlib.sha256).hexdigest()


def valid_csrf(keys: ConsoleKeys, nonce: str | None, token: str | None) -> bool:
    """Whether ``token`` is the CSRF token of the cookie ``nonce`` (both must be present)."""
    if not nonce or not token:
        return False
    return hmac.compare_digest(csrf_token(keys, nonce), token)


def origin_of(url: str) -> str | None:
    """Return ``scheme://host[:port]`` of a URL, lower-cased; ``None`` when it has none."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(
    origin: str | None, referer: str | None, own: str, allowed: Collection[str] = ()
) -> bool:
    """Whether a request comes from the console's own pages (or an origin the host allows).

    Args:
        origin: The request's ``Origin`` header.
        referer: Its ``Referer`` header, read only when there is no ``Origin``.
        own: The console's own origin, as the request addressed it.
        allowed: Further origins the host serves the console under (behind a proxy).
    """
    sender = origin if origin is not None else (None if referer is None else origin_of(referer))
    if sender is None or sender == "null":
        return False
    sender = sender.lower()
    return sender == own.lower() or sender in {item.lower() for item in allowed}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@attrs.frozen
class SignedName:
    """A person's name and until when it is good, signed: the sign-in cookie's value.

    Args:
        name: Who signed in (the actor named in the action log).
        until: When the sign-in ends.
    """

    name: str
    until: datetime

    def cookie(self, keys: ConsoleKeys) -> str:
        """Return the signed cookie value."""
        body = f"{_b64(self.name.encode('utf-8'))}.{int(self.until.timestamp())}"
        signature = hmac.new(keys.sign_in, body.encode("ascii"), hashlib.sha256).hexdigest()
        return f"{body}.{signature}"

    @classmethod
    def read(cls, keys: ConsoleKeys, value: str | None, now: datetime) -> SignedName | None:
        """Return the name a cookie value signs, ``None`` unless it is genuine and unexpired."""
        if not value or value.count(".") != 2:
            return None
        body, _, signature = value.rpartition(".")
        expected = hmac.new(keys.sign_in, body.encode("ascii", "replace"), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature):
            return None
        encoded, _, seconds = body.partition(".")
        try:
            name = check_actor(_unb64(encoded).decode("utf-8"))
            until = datetime.fromtimestamp(int(seconds), now.tzinfo)
        except (ValueError, binascii.Error, ConfigurationError, OverflowError, OSError):
            return None
        return cls(name, until) if until > now else None

    @classmethod
    def lasting(cls, name: str, now: datetime, duration: timedelta) -> SignedName:
        """Return a sign-in of ``name`` from ``now`` for ``duration``."""
        return cls(name, now + duration)
