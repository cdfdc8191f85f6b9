"""OAuth2 tokens kept between processes: what a refresh saves, and how a state store keeps it.

QuickBooks, Xero and (optionally) Salesforce rotate refresh tokens: a refresh answers a new
refresh token, and the vendor soon refuses the old one. The new token must therefore be saved
*before* anything else uses the refresh's answer, somewhere every later process reads it. A
:class:`~incsync.protocols.TokenKeeper` is that place for one connection; the OAuth2 flow
(:class:`incsync.connectors.auth.OAuth2Refresh`) asks it whether a save can succeed before it
sends a refresh, saves the answer through it, and reads it again before every refresh (another
worker may have refreshed meanwhile).

:class:`StoreTokenKeeper` keeps one source's tokens in the state store, one row per source in a
table of their own (:class:`~incsync.protocols.TokenStore`), so every worker sharing the store
shares one truth. The row is JSON; with a :class:`TokenCipher` (keys from the
:data:`TOKEN_KEY_ENV` environment variable, the ``cryptography`` package's Fernet, installed with
``incsync[crypto]``) it is encrypted at rest. Without a key the row is plain text. The token
table is the only place of the state store that ever holds a secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from incsync.errors import AuthError, ConfigurationError, StoreError, TransientSourceError
from incsync.state import check_source_key
from incsync.timestamps import utc_now

if TYPE_CHECKING:
    from incsync.protocols import TokenStore

__all__ = [
    "TOKEN_KEY_ENV",
    "SealedTokens",
    "StoreTokenKeeper",
    "StoredTokens",
    "TokenCipher",
]

TOKEN_KEY_ENV = "INCSYNC_TOKEN_KEY"
"""The environment variable holding the Fernet key(s) that encrypt tokens in the state store:
one key, or several separated by commas (the first encrypts, every one decrypts)."""


@attrs.frozen
class StoredTokens:
    """The tokens kept for one connection between processes.

    Args:
        refresh_token: The refresh token to use next.
        access_token: The last access token, when one was kept with its expiry.
        expires_at: When ``access_token`` expires (aware UTC), when known.
    """

    refresh_token: str = attrs.field(repr=False)
    access_token: str | None = attrs.field(default=None, repr=False)
    expires_at: datetime | None = None

    def to_mapping(self) -> dict[str, str | None]:
        """Return the tokens as JSON-ready fields (the expiry in ISO 8601)."""
        expires = self.expires_at
        return {
            "refresh_token": self.refresh_token,
            "access_token": self.access_token,
            "expires_at": None if expires is None else expires.isoformat(),
        }

    @classmethod
    def from_mapping(cls, fields: object) -> StoredTokens | None:
        """Return the tokens :meth:`to_mapping` wrote, or ``None`` when there is no refresh token.

        An access token without a readable, aware expiry is dropped: a refresh renews it.
        """
        if not isinstance(fields, Mapping) or (refresh := _text(fields, "refresh_token")) is None:
            return None
        expires = _text(fields, "expires_at")
        try:
            expires_at = None if expires is None else datetime.fromisoformat(expires)
        except ValueError:
            expires_at = None
        access_token = _text(fields, "access_token")
        if expires_at is None or expires_at.tzinfo is None or access_token is None:
            return cls(refresh)
        return cls(refresh, access_token, expires_at)


def _text(fields: Mapping[Any, Any], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) and value else None


@attrs.frozen
class SealedTokens:
    """One source's tokens as a state store keeps them: JSON text, encrypted or not.

    Args:
        text: The tokens' JSON, or a Fernet token of it when ``encrypted``.
        encrypted: Whether ``text`` is encrypted.
        saved_at: When the row was written (aware UTC).
    """

    text: str = attrs.field(repr=False)
    encrypted: bool
    saved_at: datetime


def _tokens_from_json(text: str) -> StoredTokens | None:
    try:
        return StoredTokens.from_mapping(json.loads(text))
    except (ValueError, RecursionError):
        return None


def _fernet(fernet: Callable[[bytes], Any], key: str, position: int) -> Any:
    """Return ``fernet(key)``; a key it refuses is named by its position, never repeated."""
    try:
        return fernet(key.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigurationError(
            f"key {position} of {TOKEN_KEY_ENV} is not a Fernet key (32 url-safe base64-encoded "
            "bytes); make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


class TokenCipher:
    """Encrypts tokens at rest with Fernet (``pip install 'incsync[crypto]'``).

    Several keys rotate like ``MultiFernet``: the first encrypts every new row, each of them
    decrypts. To change keys, put the new key first and keep the old one after it until every
    source has refreshed once; then drop the old one.

    Args:
        keys: Fernet keys (32 url-safe base64-encoded bytes each), the encrypting one first.

    Raises:
        ConfigurationError: No key, a value that is not a Fernet key, or ``cryptography`` is not
            installed. The message never repeats a key.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError:
            raise ConfigurationError(
                "encrypting tokens needs the cryptography package: pip install 'incsync[crypto]'"
            ) from None
        if not keys:
            raise ConfigurationError(f"{TOKEN_KEY_ENV} holds no key")
        self._fernet = MultiFernet([_fernet(Fernet, key, n) for n, key in enumerate(keys, 1)])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TokenCipher | None:
        """Return the cipher of the keys in :data:`TOKEN_KEY_ENV`, or ``None`` when it is unset.

        Raises:
            ConfigurationError: The variable holds something that is not a list of Fernet keys,
                or ``cryptography`` is not installed.
        """
        value = environ.get(TOKEN_KEY_ENV, "")
        if not value.strip():
            return None
        return cls([key for key in value.split(",") if key.strip()])

    def encrypt(self, text: str) -> str:
        """Return ``text`` encrypted with the first key."""
        encrypted: bytes = self._fernet.encrypt(text.encode("utf-8"))
        return encrypted.decode("ascii")

    def decrypt(self, text: str) -> str | None:
        """Return ``text`` decrypted, or ``None`` when no key opens it (or it was tampered with)."""
        from cryptography.fernet import InvalidToken

        try:
            decrypted: bytes = self._fernet.decrypt(text.encode("ascii"))
            return decrypted.decode("utf-8")
        except (InvalidToken, UnicodeError):
            return None

    def __repr__(self) -> str:
        return "TokenCipher(***)"


class StoreTokenKeeper:
    """Keeps one source's OAuth2 tokens in the state store, as its token keeper.

    A :class:`~incsync.protocols.TokenKeeper`: every worker that syncs the source with a keeper
    on the same store reads and writes the same row, so a refresh made by one is seen by the
    others before they refresh. Each save is one transaction of its own, never mixed with a page.

    Args:
        store: A store that keeps tokens (every built-in store does).
        source_key: The source the tokens belong to.
        cipher: Encrypts the row; ``None`` keeps it as plain JSON (see :meth:`from_env`).

    Raises:
        ConfigurationError: ``source_key`` is not a valid key.
    """

    def __init__(
        self, store: TokenStore, source_key: str, *, cipher: TokenCipher | None = None
    ) -> None:
        self.source_key = check_source_key(source_key)
        self._store = store
        self._cipher = cipher

    @classmethod
    def from_env(
        cls, store: TokenStore, source_key: str, environ: Mapping[str, str] = os.environ
    ) -> StoreTokenKeeper:
        """Return a keeper that encrypts with the keys of :data:`TOKEN_KEY_ENV`, when it is set.

        Raises:
            ConfigurationError: The variable's value is not a list of Fernet keys, or
                ``cryptography`` is not installed.
        """
        return cls(store, source_key, cipher=TokenCipher.from_env(environ))

    def load(self) -> StoredTokens | None:
        """Return the tokens saved for the source, or ``None`` when none are.

        Raises:
            AuthError: The row is encrypted and no key given opens it.
            TransientSourceError: The store could not be read.
        """
        try:
            sealed = self._store.load_tokens(self.source_key)
        except StoreError as error:
            raise TransientSourceError(
                f"the tokens of source {self.source_key!r} could not be read from the state "
                f"store ({error}); the next cycle tries again"
            ) from None
        if sealed is None:
            return None
        text = sealed.text
        if sealed.encrypted:
            opened = None if self._cipher is None else self._cipher.decrypt(sealed.text)
            if opened is None:
                given = "no key opens them" if self._cipher else f"{TOKEN_KEY_ENV} is not set"
                raise AuthError(
                    f"the tokens of source {self.source_key!r} in the state store are encrypted "
                    f"and {given}: set {TOKEN_KEY_ENV} to the key they were saved with (a new "
                    "key first, the old ones after it, separated by commas)"
                )
            text = opened
        tokens = _tokens_from_json(text)
        if tokens is None:
            raise AuthError(
                f"the state store's row of tokens for source {self.source_key!r} holds no refresh "
                "token; reconnect the source with a new grant"
            )
        return tokens

    def check(self) -> None:
        """Make sure a save can succeed now, before a refresh is asked for.

        Raises:
            TransientSourceError: The store cannot write the row now (read-only, unreachable);
                no refresh is sent, so the kept refresh token stays valid.
        """
        try:
            self._store.check_tokens_writable(self.source_key)
        except StoreError as error:
            raise TransientSourceError(
                f"the state store cannot save the tokens of source {self.source_key!r} now "
                f"({error}); no refresh was asked for, so the refresh token it keeps still works"
            ) from None

    def save(self, tokens: StoredTokens) -> None:
        """Write the source's tokens in one transaction of their own.

        Raises:
            TransientSourceError: The store failed; the new tokens are kept in memory and saved
                again before the next request.
        """
        text = json.dumps(tokens.to_mapping())
        encrypted = self._cipher is not None
        if self._cipher is not None:
            text = self._cipher.encrypt(text)
        try:
            self._store.save_tokens(self.source_key, SealedTokens(text, encrypted, utc_now()))
        except StoreError as error:
            raise TransientSourceError(
                f"the renewed tokens of source {self.source_key!r} could not be saved to the "
                f"state store ({error}); they are saved again before the next request"
            ) from None

    def __repr__(self) -> str:
        return f"StoreTokenKeeper({self.source_key!r}, encrypted={self._cipher is not None})"
