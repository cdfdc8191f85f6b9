"""The commands that read or change stored state: status, cursor, reset, cancel, resume and more.

They are ``status``, ``cursor``, ``reset`` (and its rewind), ``cancel``, ``resume``, ``unlock``,
``rejected`` and ``history``.

None of them calls a source, so none needs a source's credentials: they open the store named in
the config file and nothing else.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Protocol

from incsync.engine import SyncEngine
from incsync.errors import ConfigurationError
from incsync.humanize import plural
from incsync.integrations.cli._config import Config, ConfigFileError
from incsync.integrations.cli._output import (
    cursor_json,
    cursor_text,
    errors_text,
    history_json,
    history_text,
    lease_text,
    leases_text,
    rejected_json,
    rejected_text,
    rewound_text,
    set_aside_hint,
    set_aside_text,
    status_check,
    status_html,
    status_json,
    status_text,
)
from incsync.integrations.cli._secrets import env_value
from incsync.protocols import StateStore, TokenStore, TransactionSink
from incsync.state import SourceState, held_lease
from incsync.status import StatusPolicy, status_of
from incsync.stores.sqlite import SQLiteStore
from incsync.timestamps import utc_now

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Store",
    "change_command",
    "cursor_command",
    "history_command",
    "open_store",
    "policy_of",
    "rejected_command",
    "status_command",
    "unlock_command",
]

EXIT_OK = 0
"""Everything asked for was done."""
EXIT_FAILED = 1
"""A cycle failed, the store could not be used, or ``unlock`` met a lease still held."""
EXIT_USAGE = 2
"""The command line or the config file is wrong."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (SIGINT), by the shells' convention of 128 + the signal's number."""


class Store(StateStore, TransactionSink, TokenStore, Protocol):
    """A state store that is also the transaction sink and the token store, and can be closed."""

    def close(self) -> None:
        """Release the store's connections."""


def _postgres(config: Config, environ: Mapping[str, str]) -> Store:
    # Imported on use: only a postgres config needs it, and psycopg behind it.
    from incsync.stores.postgres import PostgresStore

    conninfo_env = config.store.conninfo_env or ""
    conninfo = env_value(config.path, "store.conninfo_env", conninfo_env, environ)
    store = PostgresStore(
        conninfo,
        schema=config.store.schema,
        history_retention=config.history,
        mappings=config.mappings(),
    )
    try:
        # Idempotent and safe from every worker at once, so every command may bring the schema
        # up to date rather than fail on a first run.
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


@contextmanager
def open_store(
    config: Config, environ: Mapping[str, str] = os.environ, *, create: bool = False
) -> Iterator[Store]:
    """Open the store the config names, and close it afterwards.

    Only ``incsync run`` creates a SQLite database: any other command given a mistyped path
    would otherwise report on, or change, a new empty database as if it were the real one.

    Args:
        config: The config.
        environ: Where the PostgreSQL connection string is read.
        create: Create the SQLite file when it does not exist, rather than refuse.

    Yields:
        The store, which is also the transaction sink.

    Raises:
        ConfigFileError: The store's environment variable is not set, its kind is unavailable,
            or (without ``create``) the SQLite file does not exist.
        StoreError: The store cannot be opened.
    """
    if config.store.kind == "postgres":
        store = _postgres(config, environ)
    else:
        path = config.store.path
        if path is None:
            raise ConfigFileError(config.path, "store.path", "missing; give the SQLite file's path")
        if not create and not path.exists():
            raise ConfigFileError(
                config.path,
                "store.path",
                f"no such database {path}; check the path (only incsync run creates one)",
            )
        store = SQLiteStore(path, history_retention=config.history, mappings=config.mappings())
    try:
        yield store
    finally:
        store.close()


def _wants_colour(stream: IO[str]) -> bool:
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    return stream.isatty() and not os.environ.get("NO_COLOR")


def _states(config: Config, store: Store) -> list[SourceState]:
    """Return the configured sources' states in file order, then other stored ones by key."""
    stored = {state.key: state for state in store.list_states()}
    configured = [stored.get(source.key) or store.load(source.key) for source in config.sources]
    names = {source.key for source in config.sources}
    return configured + [state for key, state in sorted(stored.items()) if key not in names]


def policy_of(config: Config, key: str) -> StatusPolicy:
    """Return the status policy of one source: its engine's and its interval's, as run has them."""
    source = config.source(key)
    interval = config.run.interval if source is None else source.interval
    # Whoever reads this command's hover lists set-aside records with the command, not with the
    # library call that the default hint names.
    return StatusPolicy.matching(
        config.run.policy, interval=interval, set_aside_hint=set_aside_hint(key)
    )


def status_command(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    """Print or write the status of every source; see ``incsync status --help``.

    Raises:
        ConfigurationError: ``--zone`` is not an IANA time zone.
    """
    now = utc_now()
    with open_store(config) as store:
        states = _states(config, store)
        # One query for every source, not one per source: a store of 10,000 sources answers in
        # a fraction of the time (bench/status.py).
        histories = store.history_summaries(state.key for state in states)
    try:
        rows = [
            (
                state,
                status_of(
                    state,
                    now=now,
                    history=histories[state.key],
                    policy=policy_of(config, state.key),
                    zone=args.zone,
                ),
            )
            for state in states
        ]
    except ConfigurationError as error:
        raise ConfigurationError(f"--zone: {error}") from None
    if args.check:
        state, line = status_check(status.color for _, status in rows)
        out.write(line)
        return state
    if args.json:
        out.write(status_json(rows, now=now, histories=histories))
    elif args.html is not None:
        args.html.write_text(status_html(rows, now=now, title="Automated Import"), encoding="utf-8")
        out.write(f"{args.html}: status page of {plural(len(rows), 'source')} written\n")
    else:
        # A terminal's width (COLUMNS, else the terminal's own); a pipe or a file takes any.
        width = shutil.get_terminal_size().columns if out.isatty() else None
        out.write(status_text(rows, ansi=_wants_colour(out), width=width))
        out.write(errors_text(states, now=now, zone=args.zone, width=width))
        out.write(leases_text(states, now=now, zone=args.zone, width=width))
        out.write(set_aside_text(states))
    return EXIT_OK


def _known_key(config: Config, store: Store, key: str) -> None:
    if config.source(key) is None and key not in {state.key for state in store.list_states()}:
        raise config.no_source(key)


_DONE = {
    "reset": "reset: the next cycle re-reads and re-applies every record; no transaction deleted",
    "cancel": "cancelled: no cycle runs until it is resumed or reset; no transaction deleted",
    "resume": "resumed: the next cycle runs as usual",
}


def cursor_command(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    """Show where one source's next cycle reads from.

    Raises:
        ConfigFileError: The key names no source of the file or the store.
    """
    with open_store(config) as store:
        _known_key(config, store, args.key)
        state = store.load(args.key)
    out.write(cursor_json(state) if args.json else cursor_text(state, now=utc_now()))
    return EXIT_OK


def change_command(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    """Reset (or, with ``--since``, rewind), cancel or resume one source (``args.command``).

    Raises:
        ConfigFileError: The key names no source of the file or the store.
        ConfigurationError: The source cannot be rewound now (its reset's read is pending).
    """
    with open_store(config) as store:
        _known_key(config, store, args.key)
        engine = SyncEngine(store)
        since = getattr(args, "since", None)
        if since is not None:
            out.write(rewound_text(engine.rewind(args.key, since), since))
            return EXIT_OK
        change = {"reset": engine.reset, "cancel": engine.cancel, "resume": engine.resume}
        state = change[args.command](args.key)
    out.write(f"{args.key}: {_DONE[args.command]} (phase {state.phase.value})\n")
    return EXIT_OK


def unlock_command(
    args: argparse.Namespace, config: Config, streams: tuple[IO[str], IO[str]]
) -> int:
    """Release one source's lease; refused while it is unexpired, unless ``args.force``.

    The release is of the lease seen (its fencing token): its holder's later writes are refused,
    and a cycle that took a new lease meanwhile keeps it.

    Raises:
        ConfigFileError: The key names no source of the file or the store.
    """
    out, err = streams
    now = utc_now()
    with open_store(config) as store:
        _known_key(config, store, args.key)
        state = store.load(args.key)
        lease = held_lease(state, now)
        if lease is None:
            out.write(f"{args.key}: no cycle holds its lease; nothing to unlock\n")
            return EXIT_OK
        held = lease_text(lease, state.last_attempt)
        if not args.force:
            err.write(
                f"incsync: {args.key}: {held}; a cycle may still be running there. Wait for it "
                "(or for the lease to expire), or, if that process is gone, add --force\n"
            )
            return EXIT_FAILED
        store.release_lease(args.key, lease)
    out.write(
        f"{args.key}: unlocked (the {held}); its holder's later writes are refused, and the "
        "next cycle carries on from the last checkpoint\n"
    )
    return EXIT_OK


def rejected_command(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    """List the records set aside for one source, with reasons.

    Raises:
        ConfigFileError: The key names no source of the file or the store.
    """
    with open_store(config) as store:
        _known_key(config, store, args.key)
        records = store.list_rejected(args.key)
    out.write(rejected_json(args.key, records) if args.json else rejected_text(args.key, records))
    return EXIT_OK


def history_command(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    """Print one source's cycles, newest first, as text or JSON.

    Raises:
        ConfigFileError: The key names no source of the file or the store.
        ConfigurationError: ``--zone`` is not an IANA time zone.
    """
    with open_store(config) as store:
        _known_key(config, store, args.key)
        entries = store.history(args.key, args.limit)
    if args.json:
        out.write(history_json(entries))
        return EXIT_OK
    try:
        out.write(history_text(args.key, entries, zone=args.zone))
    except ConfigurationError as error:
        raise ConfigurationError(f"--zone: {error}") from None
    return EXIT_OK
