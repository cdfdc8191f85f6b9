"""The token file: where the command keeps the OAuth2 tokens that vendors rotate on refresh.

QuickBooks and Xero (and Salesforce, when the connected app says so) issue a new refresh token at
every refresh and soon refuse the old one, so the variable that held the first grant stops working
after one run. Every refresh therefore rewrites the source's entry in one JSON file, atomically (a
temporary file in the same directory, then ``os.replace``) with mode 0600, under a lock: a thread
lock for the workers of one process and, where ``fcntl`` exists, ``flock`` on a ``.lock`` file
beside it for other processes. Before a refresh is sent the same steps are tried without the
rename (:meth:`TokenFile.check`), so a file that cannot be written fails the cycle *before* the
vendor rotates anything. At start-up a source takes its tokens from the file when it has an entry,
else from its environment variable. ``tokens = "store"`` keeps them in the state store instead
(:class:`incsync.tokens.StoreTokenKeeper`). Tokens are written nowhere else: not in a log or the
output.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from incsync.errors import ConfigurationError, SourceError
from incsync.protocols import TokenKeeper
from incsync.timestamps import utc_now
from incsync.tokens import StoredTokens

if sys.platform != "win32":  # flock is POSIX; on Windows the thread lock guards one process
    import fcntl

__all__ = ["TOKENS_IN_STORE", "TOKENS_SCHEMA", "NotedKeeper", "TokenFile", "default_token_path"]

TOKENS_SCHEMA = "incsync.tokens/1"
"""The name and version of the token file's format."""

TOKENS_IN_STORE = "store"
"""The value of ``tokens`` in a config file that keeps the tokens in the state store."""


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


def _entry(tokens: StoredTokens) -> dict[str, Any]:
    return {**tokens.to_mapping(), "saved_at": utc_now().isoformat()}


class NotedKeeper:
    """A :class:`~incsync.protocols.TokenKeeper` that tells ``note`` every token it reads or saves.

    The command masks those in everything it prints.

    Args:
        keeper: The keeper to wrap.
        note: Called with each token.
    """

    def __init__(self, keeper: TokenKeeper, note: Callable[[str], None]) -> None:
        self._keeper = keeper
        self._note = note

    def load(self) -> StoredTokens | None:
        """Return the wrapped keeper's tokens, noted."""
        tokens = self._keeper.load()
        if tokens is not None:
            self._noted(tokens)
        return tokens

    def check(self) -> None:
        """Check the wrapped keeper."""
        self._keeper.check()

    def save(self, tokens: StoredTokens) -> None:
        """Note the tokens, then save them with the wrapped keeper."""
        self._noted(tokens)
        self._keeper.save(tokens)

    def _noted(self, tokens: StoredTokens) -> None:
        for token in (tokens.refresh_token, tokens.access_token):
            if token:
                self._note(token)


class _FileKeeper:
    """One source's entry of a token file, as a :class:`~incsync.protocols.TokenKeeper`."""

    def __init__(self, file: TokenFile, key: str) -> None:
        self._file = file
        self._key = key

    def load(self) -> StoredTokens | None:
        try:
            return self._file.load(self._key)
        except ConfigurationError as error:
            raise SourceError(str(error)) from None

    def check(self) -> None:
        self._file.check()

    def save(self, tokens: StoredTokens) -> None:
        self._file.save(self._key, tokens)


class TokenFile:
    """One JSON file of OAuth2 tokens by source key, read at start-up and rewritten on refresh.

    Args:
        path: The file; created on the first save, with its directory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
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
            return StoredTokens.from_mapping(self._read().get(key))

    def values(self) -> list[str]:
        """Return every token the file holds, for masking; nothing when it cannot be read."""
        try:
            entries = self._read().values()
        except ConfigurationError:
            return []
        found = [StoredTokens.from_mapping(entry) for entry in entries]
        return [
            token
            for stored in found
            if stored is not None
            for token in (stored.refresh_token, stored.access_token)
            if token
        ]

    def keeper(self, key: str) -> TokenKeeper:
        """Return the keeper of one source's entry, for its OAuth2 flow."""
        return _FileKeeper(self, key)

    def check(self) -> None:
        """Make sure :meth:`save` can write the file now, changing nothing.

        The same steps as a save but the rename: the directory is made, the lock taken, the file
        read (it must be a token file) and a temporary file created beside it and removed. An
        existing file without write permission is refused too, as its owner made it read-only.

        Raises:
            SourceError: A save would fail; the message names the file and what to do.
        """
        advice = (
            "no refresh was asked for, so the refresh token it keeps still works: make the file "
            "and its directory writable by this user (or name another file with tokens = ...), "
            "then run again"
        )
        with self._writing(f"the token file {self.path} cannot be written", advice):
            self._read()
            if self.path.exists() and not os.access(self.path, os.W_OK):
                raise PermissionError(13, "Permission denied")
            descriptor, temporary = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
            os.close(descriptor)
            os.unlink(temporary)

    def save(self, key: str, tokens: StoredTokens) -> None:
        """Write a source's new tokens, keeping the other sources' entries.

        Args:
            key: The source's key.
            tokens: What the refresh produced.

        Raises:
            SourceError: The file could not be written.
        """
        advice = (
            "they are kept in memory and saved again before the next request: fix the file, or "
            "the vendor may refuse the refresh token it holds at the next run"
        )
        with self._writing(f"the renewed tokens could not be saved to {self.path}", advice):
            sources = self._read()
            sources[key] = _entry(tokens)
            self._write({"schema": TOKENS_SCHEMA, "sources": sources})

    @contextmanager
    def _writing(self, failure: str, advice: str) -> Iterator[None]:
        """Run the block under both locks; a failure is one ``SourceError``: what, why, advice."""
        try:
            with self._lock, self._file_lock():
                yield
        except (OSError, ConfigurationError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not a token file"
            raise SourceError(f"{failure} ({reason}); {advice}") from None

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
