"""Tokens kept in the state store: one row per source, plain or encrypted, shared by workers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from incsync import SQLiteStore
from incsync.errors import AuthError, ConfigurationError, StoreError, TransientSourceError
from incsync.protocols import TokenKeeper, TokenStore
from incsync.stores.postgres import PostgresStore
from incsync.tokens import TOKEN_KEY_ENV, SealedTokens, StoredTokens, StoreTokenKeeper, TokenCipher
from tests.helpers import Store, unwritable
from tests.stores.postgres_server import CONNINFO

EXPIRES = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
TOKENS = StoredTokens("rt_SENTINEL_refresh", "at_SENTINEL_access", EXPIRES)
KEY = Fernet.generate_key().decode()
OTHER_KEY = Fernet.generate_key().decode()


def test_every_store_is_a_token_store_and_the_keeper_a_token_keeper(store: Store) -> None:
    """The protocols hold for each built-in store, and for the keeper over it."""
    assert isinstance(store, TokenStore)
    assert isinstance(StoreTokenKeeper(store, "qb"), TokenKeeper)


def test_tokens_round_trip_one_row_per_source(store: Store) -> None:
    """A saved row is loaded back; each source has its own; a save replaces the source's row."""
    qb, xero = StoreTokenKeeper(store, "qb"), StoreTokenKeeper(store, "xero")
    assert qb.load() is None
    qb.check()  # writable before any row exists
    qb.save(TOKENS)
    xero.save(StoredTokens("rt_SENTINEL_xero"))
    assert qb.load() == TOKENS
    assert xero.load() == StoredTokens("rt_SENTINEL_xero")
    newer = StoredTokens("rt_SENTINEL_newer", "at_SENTINEL_newer", EXPIRES + timedelta(hours=1))
    qb.save(newer)
    assert StoreTokenKeeper(store, "qb").load() == newer
    sealed = store.load_tokens("qb")
    assert sealed is not None
    assert not sealed.encrypted
    assert "rt_SENTINEL_newer" in sealed.text  # plain text without a key, as documented
    assert sealed.saved_at.tzinfo is not None


def test_an_encrypted_row_holds_no_token_and_reads_back_with_the_key(store: Store) -> None:
    """With a key the stored text is a Fernet token: neither token appears in it."""
    keeper = StoreTokenKeeper(store, "qb", cipher=TokenCipher([KEY]))
    keeper.save(TOKENS)
    sealed = store.load_tokens("qb")
    assert sealed is not None
    assert sealed.encrypted
    assert "SENTINEL" not in sealed.text
    assert sealed.text.startswith("gAAAAA")  # Fernet's version byte
    assert keeper.load() == TOKENS


def test_a_wrong_or_missing_key_is_one_clear_auth_error_without_a_secret(store: Store) -> None:
    """Rows encrypted with another key, or read without one: an AuthError naming the variable."""
    StoreTokenKeeper(store, "qb", cipher=TokenCipher([KEY])).save(TOKENS)
    for cipher, words in ((TokenCipher([OTHER_KEY]), "no key opens them"), (None, "is not set")):
        with pytest.raises(AuthError, match=words) as caught:
            StoreTokenKeeper(store, "qb", cipher=cipher).load()
        message = str(caught.value)
        assert TOKEN_KEY_ENV in message
        assert "SENTINEL" not in message
        assert KEY not in message
        assert OTHER_KEY not in message
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None


def test_keys_rotate_the_first_encrypts_and_every_one_decrypts(store: Store) -> None:
    """A row written with the old key is read with [new, old]; its next save uses the new key."""
    StoreTokenKeeper(store, "qb", cipher=TokenCipher([OTHER_KEY])).save(TOKENS)
    rotating = StoreTokenKeeper(store, "qb", cipher=TokenCipher([KEY, OTHER_KEY]))
    assert rotating.load() == TOKENS
    rotating.save(TOKENS)
    assert StoreTokenKeeper(store, "qb", cipher=TokenCipher([KEY])).load() == TOKENS


def test_a_plain_row_is_read_with_a_key_and_encrypted_at_its_next_save(store: Store) -> None:
    """Setting a key later needs no migration: plain rows still read, and are sealed on save."""
    StoreTokenKeeper(store, "qb").save(TOKENS)
    keeper = StoreTokenKeeper.from_env(store, "qb", {TOKEN_KEY_ENV: f"{KEY}, "})
    assert keeper.load() == TOKENS
    keeper.save(TOKENS)
    sealed = store.load_tokens("qb")
    assert sealed is not None
    assert sealed.encrypted


def test_a_row_without_a_refresh_token_is_an_auth_error(store: Store) -> None:
    """A row damaged by hand is reported, never used."""
    store.save_tokens("qb", SealedTokens("{}", False, EXPIRES))
    with pytest.raises(AuthError, match="holds no refresh token; reconnect"):
        StoreTokenKeeper(store, "qb").load()


def test_bad_key_values_are_configuration_errors_that_do_not_repeat_them() -> None:
    """A value that is not a Fernet key is named by its position only; no key is no cipher."""
    secret_looking = "not-a-key-SENTINEL"
    with pytest.raises(ConfigurationError, match=f"key 2 of {TOKEN_KEY_ENV} is not a Fernet") as e:
        TokenCipher.from_env({TOKEN_KEY_ENV: f"{KEY},{secret_looking}"})
    assert "SENTINEL" not in str(e.value)
    assert TokenCipher.from_env({TOKEN_KEY_ENV: "  "}) is None
    assert TokenCipher.from_env({}) is None
    with pytest.raises(ConfigurationError, match="holds no key"):
        TokenCipher([])
    assert "SENTINEL" not in repr(StoreTokenKeeper.from_env(_memory(), "qb", {TOKEN_KEY_ENV: KEY}))


def _memory() -> TokenStore:
    from incsync.testing import InMemoryStore

    return InMemoryStore()


def test_a_read_only_sqlite_database_fails_the_check_and_the_save(tmp_path: Path) -> None:
    """The check writes like a save does: an unwritable file is refused before any refresh."""
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        StoreTokenKeeper(store, "qb").save(TOKENS)
    with unwritable(path), SQLiteStore(path) as store:
        with pytest.raises(StoreError, match="readonly"):
            store.check_tokens_writable("qb")
        with pytest.raises(TransientSourceError, match="no refresh was asked for") as caught:
            StoreTokenKeeper(store, "qb").check()
        assert "SENTINEL" not in str(caught.value)
        with pytest.raises(TransientSourceError, match="could not be saved"):
            StoreTokenKeeper(store, "qb").save(StoredTokens("rt_SENTINEL_new"))
        assert StoreTokenKeeper(store, "qb").load() == TOKENS  # reading still works
    with SQLiteStore(path) as store:
        StoreTokenKeeper(store, "qb").check()


def test_a_read_only_postgresql_session_fails_the_check(postgres_store: PostgresStore) -> None:
    """A session that may not write (a standby, a read-only role) is refused by the check."""
    StoreTokenKeeper(postgres_store, "qb").save(TOKENS)
    read_only = PostgresStore(
        psycopg.conninfo.make_conninfo(CONNINFO, options="-c default_transaction_read_only=on"),
        schema=postgres_store.schema,
    )
    with read_only:
        with pytest.raises(StoreError, match="read-only transaction"):
            read_only.check_tokens_writable("qb")
        assert StoreTokenKeeper(read_only, "qb").load() == TOKENS
