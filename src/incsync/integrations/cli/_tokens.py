"""The token file: where the command keeps the OAuth2 tokens that vendors rotate on refresh.

QuickBooks and Xero (and Salesforce, when the connected app says so) issue a new refresh token at
every refresh and soon refuse the old one, so the variable that held the first grant stops working
after one run. Every refresh therefore rewrites
the source's entry in one JSON file, atomically (a temporary file in the same directory, then
``os.replace``) with mode 0600, under a lock: a thread lock for the workers of one process and,
where ``fcntl`` exists, ``flock`` on a ``.lock`` file beside it for other processes. At start-up
a source takes its tokens from the file when it has an entry, else from its environment variable.
The file is the only place a token is ever written: never the database, a log or the output.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from incsync.connectors.auth import TokenSet
from incsync.errors import ConfigurationError, SourceError
from incsync.timestamps import utc_now

if sys.platform != "win32":  # flock is POSIX; on Windows the thread lock guards one process
    import fcntl

__all__ = ["TOKENS_SCHEMA", "StoredTokens", "TokenFile", "default_token_path"]

TOKENS_SCHEMA = "incsync.tokens/1"
"""The name and version of the token file's format."""


@attrs.frozen
class StoredTokens:
    """The tokens the file holds for one source.

    Args:
        refresh_token: The refresh token to use next.
        access_token: The last access token, when one was saved.
        expires_at: When ``access_token`` expires (aware UTC), when known.
    """

    refresh_token: str = attrs.field(repr=False)
    access_token: str | None = attrs.field(default=None, repr=False)
    expires_at: datetime | None = None


def default_token_path(store_file: Path | None, config_file: Path) -> Path:
    """Return where the token file is when the config does not say.

    Args:
        store_file: The SQLite database, or ``None`` for a PostgreSQL store.
        config_file: The config file.

    Returns:
        ``<database>.tokens.json`` beside the database, else ``<config stem>.tokens.json`` beside
        the config file.
    """
    if store_file is not None:
        return store_file.with_name(store_file.name + ".tokens.json")
    return config_file.with_name(config_file.stem + ".tokens.json")


def _text(entry: Mapping[str, Any], name: str) -> str | None:
    value = entry.get(name)
    return value if isinstance(value, str) and value else None


def _entry_tokens(entry: object) -> StoredTokens | None:
    if not isinstance(entry, dict):
        return None
    refresh_token = _text(entry, "refresh_token")
    if refresh_token is None:
        return None
    expires = _text(entry, "expires_at")
    try:
        expires_at = None if expires is None else datetime.fromisoformat(expires)
    except ValueError:
        expires_at = None
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = None
    access_token = _text(entry, "access_token") if expires_at is not None else None
    return StoredTokens(refresh_token, access_token, expires_at if access_token else None)


def _entry(tokens: TokenSet) -> dict[str, Any]:
    return {
        "refresh_token": tokens.refresh_token,
        "access_token": tokens.access_token,
        "expires_at": None if tokens.expires_at is None else tokens.expires_at.isoformat(),
        "saved_at": utc_now().isoformat(),
    }


class TokenFile:
    """One JSON file of OAuth2 tokens by source key, read at start-up and rewritten on refresh.

    Args:
        path: The file; created on the first save, with its directory.
        on_save: Called with every token written (the command adds them to what it masks).
    """

    def __init__(self, path: Path, on_save: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._on_save = on_save
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise ConfigurationError(
                f"{self.path}: the token file cannot be read ({error.strerror}); "
                "fix its permissions or name another file with tokens = ..."
            ) from None
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict) or document.get("schema") != TOKENS_SCHEMA:
            # Never echoed: the content is tokens.
            raise ConfigurationError(
                f"{self.path}: not a token file of incsync ({TOKENS_SCHEMA}); move it away, "
                "and the sources start again from their environment variables"
            )
        sources = document.get("sources")
        return dict(sources) if isinstance(sources, dict) else {}

    def load(self, key: str) -> StoredTokens | None:
        """Return the tokens saved for a source, or ``None`` when the file has none.

        Raises:
            ConfigurationError: The file exists but cannot be read, or is not a token file.
        """
        with self._lock:
            return _entry_tokens(self._read().get(key))

    def values(self) -> list[str]:
        """Return every token the file holds, for masking; nothing when it cannot be read."""
        try:
            entries = self._read().values()
        except ConfigurationError:
            return []
        found = [_entry_tokens(entry) for entry in entries]
        return [
            token
            for stored in found
            if stored is not None
            for token in (stored.refresh_token, stored.access_token)
            if token
        ]

    def save(self, key: str, tokens: TokenSet) -> None:
        """Write a source's new tokens, keeping the other sources' entries.

        Meant as a connector's ``on_refresh`` callback, so a failure is a :class:`SourceError`:
        the cycle fails with a message saying what to fix, rather than losing a rotated token
        silently.

        Args:
            key: The source's key.
            tokens: What the refresh produced.

        Raises:
            SourceError: The file could not be written.
        """
        if self._on_save is not None:
            for token in (tokens.refresh_token, tokens.access_token):
                self._on_save(token)
        try:
            with self._lock, self._file_lock():
                sources = self._read()
                sources[key] = _entry(tokens)
                self._write({"schema": TOKENS_SCHEMA, "sources": sources})
        except (OSError, ConfigurationError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not a token file"
            raise SourceError(
                f"the renewed tokens could not be saved to {self.path} ({reason}); the vendor "
                "may already refuse the old refresh token: fix the file, then reconnect the "
                "source with a new grant in its environment variable if the next run fails"
            ) from None

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            yield
            return
        descriptor = os.open(
            self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600
        )
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def _write(self, document: Mapping[str, Any]) -> None:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            # mkstemp creates the file 0600 already; said again for umask-proof clarity.
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(document, file, indent=2)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
