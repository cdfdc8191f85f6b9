"""Connecting PostgresStore: a server that refuses is reported in seconds, in one line, with why.

The refusals come from the real server (an unknown database or role) or from this machine (a
closed port, a listener that never answers); see tests/stores/postgres_server.py.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import psycopg.conninfo
import pytest

from incsync import StoreError
from incsync.stores._postgres_connect import (
    CONNECT_TIMEOUT_SECONDS,
    connect_timeout_missing,
    refusal_message,
)
from incsync.stores.postgres import PostgresStore
from tests.cli.support import SAMPLE, incsync, write_config
from tests.stores.postgres_server import CONNINFO, require_server

PASSWORD = "hunter2-" + secrets.token_hex(4)
KEY = "acme/quickbooks"


def _closed_port() -> int:
    """A local port nothing listens on: one the system just handed out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _misconfigured(wrong: str) -> tuple[str, str]:
    """The test server's conninfo with one thing wrong and a password; libpq's reason for it."""
    if wrong == "port":
        port = _closed_port()
        conninfo = psycopg.conninfo.make_conninfo(CONNINFO, host="127.0.0.1", port=port)
        return psycopg.conninfo.make_conninfo(conninfo, password=PASSWORD), "Connection refused"
    require_server()
    name = f"incsync_nosuch_{secrets.token_hex(4)}"
    if wrong == "database":
        conninfo = psycopg.conninfo.make_conninfo(CONNINFO, dbname=name, password=PASSWORD)
        return conninfo, f'database "{name}" does not exist'
    conninfo = psycopg.conninfo.make_conninfo(CONNINFO, user=name, password=PASSWORD)
    return conninfo, f'role "{name}" does not exist'


@pytest.mark.parametrize("wrong", ["port", "database", "user"])
def test_a_misconfigured_server_fails_in_seconds_with_libpq_reason(
    wrong: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong port, database or user is one StoreError line within seconds, not after the
    pool's 30-second timeout: it names the server tried and libpq's reason, never the password,
    and the pool logs nothing (it never starts on a server that refuses).
    """
    conninfo, reason = _misconfigured(wrong)
    caplog.set_level(logging.DEBUG, logger="psycopg.pool")
    started = time.monotonic()
    with PostgresStore(conninfo) as store, pytest.raises(StoreError) as raised:
        store.migrate()
    elapsed = time.monotonic() - started

    assert elapsed < 5
    message = str(raised.value)
    assert message.startswith("cannot connect to PostgreSQL (host=")
    assert message.endswith(f"to migrate schema 'incsync': {reason}")
    assert "\n" not in message
    assert PASSWORD not in message
    assert [record for record in caplog.records if record.name.startswith("psycopg")] == []
    assert capsys.readouterr().err == ""


def test_every_call_until_one_connects_reports_the_refusal() -> None:
    """The store is not broken by a refusal: each call tries again and says the same."""
    conninfo, reason = _misconfigured("port")
    with PostgresStore(conninfo) as store:
        for call in (lambda: store.load(KEY), store.list_states):
            with pytest.raises(StoreError, match=f": {reason}$"):
                call()


def test_a_store_closed_before_its_first_call_stays_closed(postgres_conninfo: str) -> None:
    """Closing a store that never connected does not let a later call open its pool."""
    store = PostgresStore(postgres_conninfo)
    store.close()
    with pytest.raises(StoreError, match="is closed; could not load the state"):
        store.load(KEY)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A local port that takes connections and never answers, like a stalled server.

    The kernel completes the handshake for a listening socket before anyone accepts, so the
    client connects and then waits for a reply that never comes.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_server_that_never_answers_fails_after_the_connect_timeout(
    silent_listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled server is given the environment's PGCONNECT_TIMEOUT, not the pool's timeout."""
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    conninfo = f"host=127.0.0.1 port={silent_listener} dbname=app password={PASSWORD}"
    started = time.monotonic()
    with PostgresStore(conninfo) as store, pytest.raises(StoreError) as raised:
        store.load(KEY)
    assert 1.5 < time.monotonic() - started < 5
    assert str(raised.value) == (
        f"cannot connect to PostgreSQL (host=127.0.0.1 port={silent_listener} dbname=app) "
        f"to load the state of {KEY!r}: connection timeout expired"
    )


def test_a_connection_attempt_is_bounded_unless_the_user_bounds_it() -> None:
    """Without connect_timeout in the conninfo or PGCONNECT_TIMEOUT, the store sets its own."""
    assert CONNECT_TIMEOUT_SECONDS <= 5
    assert connect_timeout_missing({"host": "db"}, {})
    assert connect_timeout_missing({"host": "db"}, {"PGCONNECT_TIMEOUT": ""})
    assert not connect_timeout_missing({"connect_timeout": "20"}, {})
    assert not connect_timeout_missing({}, {"PGCONNECT_TIMEOUT": "20"})


@pytest.mark.parametrize(
    ("libpq_message", "reason"),
    [
        (
            'connection failed: connection to server on socket "/run/postgresql/.s.PGSQL.5432" '
            "failed: No such file or directory\n\tIs the server running locally?",
            "No such file or directory",
        ),
        (
            'connection failed: connection to server at "10.0.0.2", port 5432 failed: FATAL:  '
            'password authentication failed for user "sync"',
            'password authentication failed for user "sync"',
        ),
        ("failed to resolve host 'db.invalid': [Errno -2] Name or service not known", None),
        (f"FATAL:  an echo of {PASSWORD} by a server", "an echo of *** by a server"),
        ("", "no reason given"),
    ],
)
def test_the_refusal_is_libpq_reason_on_one_line(libpq_message: str, reason: str | None) -> None:
    """libpq's framing and continuation lines are dropped; the password is masked anyway."""
    params = {"host": "db", "port": "5432", "user": "sync", "password": PASSWORD}
    message = refusal_message(params, "load the state", libpq_message, [PASSWORD])
    expected = reason or libpq_message
    assert message.startswith(
        "cannot connect to PostgreSQL (host=db port=5432 user=sync) to load the state: "
    )
    assert message.endswith(expected)
    assert "\n" not in message
    assert PASSWORD not in message


def test_a_server_gone_after_start_is_reported_with_its_reason(postgres_schema: str) -> None:
    """When the pool gets no connection for pool_timeout, one direct attempt says why."""
    role = f"incsync_gone_{secrets.token_hex(4)}"
    with psycopg.connect(CONNINFO, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE SCHEMA "{postgres_schema}" AUTHORIZATION "{role}"')
    try:
        conninfo = psycopg.conninfo.make_conninfo(CONNINFO, user=role, password=PASSWORD)
        with PostgresStore(
            conninfo, schema=postgres_schema, min_size=0, pool_timeout=timedelta(seconds=1)
        ) as store:
            store.migrate()
            with psycopg.connect(CONNINFO, autocommit=True) as admin:
                admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
            messages = []
            for _ in range(3):  # the pool may first hand out the connection the server ended
                with pytest.raises(StoreError) as raised:
                    store.load(KEY)
                messages.append(str(raised.value))
        assert messages[-1].startswith("cannot connect to PostgreSQL (host=")
        assert messages[-1].endswith(
            f'user={role}) to load the state of {KEY!r}: role "{role}" is not permitted to log in'
        )
    finally:
        with psycopg.connect(CONNINFO, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{postgres_schema}" CASCADE')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_cli_reports_a_refused_store_in_one_line(tmp_path: Path) -> None:
    """incsync with a PostgreSQL store that refuses prints one error line, fast, and exits 1
    (the store could not be opened); the password is in no output.
    """
    conninfo, reason = _misconfigured("database")
    store = 'kind = "postgres"\nconninfo_env = "INCSYNC_DATABASE_URL"'
    path = write_config(tmp_path, SAMPLE, store=store)
    started = time.monotonic()
    done = incsync(
        "run", "--config", str(path), cwd=tmp_path, env={"INCSYNC_DATABASE_URL": conninfo}
    )
    assert time.monotonic() - started < 10  # the interpreter's start included
    assert done.code == 1
    assert done.stdout == ""
    assert done.stderr.startswith("incsync: error: StoreError: cannot connect to PostgreSQL (")
    assert done.stderr.endswith(f": {reason}\n")
    assert done.stderr.count("\n") == 1
    assert PASSWORD not in done.stderr
