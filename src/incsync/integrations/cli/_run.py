"""``incsync run``: the due cycles of the configured sources, once or on a tick, stopped cleanly.

Which sources are due is :mod:`incsync.scheduling`'s decision (each source's ``interval`` and
``account`` in the file; ``[run]`` sets the defaults, the workers and the per-account limit);
:mod:`._scheduler` runs them. Every connector is built before the first cycle, so a missing
environment variable or a refused setting stops the command before anything runs. QuickBooks, Xero
and Salesforce sources read and save their rotating tokens in the token file (:mod:`._tokens`), or
with ``tokens = "store"`` in the state store (encrypted with the keys of ``INCSYNC_TOKEN_KEY``
when it is set).

SIGINT (Ctrl-C) and SIGTERM ask the run to stop: each running cycle ends once its page in flight
is durable (``INTERRUPTED_STOP``: its outcome recorded, its lease released, the next cycle carrying
on from its checkpoint), no further cycle starts, and the command exits 130 after SIGINT (the
shells' convention) and after SIGTERM as if it had ended by itself: 0, or 1 for ``--once`` when a
cycle failed (service managers expect 0 from a service they asked to stop). A second Ctrl-C stops
at once, mid-page; the command still releases the leases its cycles hold on its way out, so any
worker may run those sources again at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import timedelta
from types import FrameType
from typing import IO

from incsync.engine import SyncEngine
from incsync.errors import ConfigurationError
from incsync.integrations.cli._commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Store,
    open_store,
)
from incsync.integrations.cli._config import Config, ConfigFileError, SourceConfig
from incsync.integrations.cli._output import result_json, result_text
from incsync.integrations.cli._progress import progress_board
from incsync.integrations.cli._scheduler import Schedule, run_scheduled
from incsync.integrations.cli._secrets import build_connector, token_keepers
from incsync.protocols import Connector
from incsync.scheduling import SourcePlan
from incsync.state import held_lease
from incsync.timestamps import utc_now

__all__ = ["StopRequest", "run_command"]


class StopRequest:
    """Remembers that a stop was asked for, and by which signal; a handler for both signals.

    Args:
        note: Prints a notice line on standard error (the board's, so a live display stays whole).
    """

    def __init__(self, note: Callable[[str], None]) -> None:
        self.event = threading.Event()
        """Set by the first signal; every running cycle watches it (``run_cycle``'s ``stop``)."""
        self._note = note
        self.signal: int | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        """Ask the cycles to stop at their next durable page; a second Ctrl-C stops at once."""
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()
        # The board's locks are re-entrant: this runs on the main thread, which may hold them.
        self._note(
            f"incsync: {signal.Signals(signum).name} received: stopping once the pages in "
            "flight are written (press Ctrl-C again to stop at once)"
        )


def _holder() -> str:
    """Name this process in the leases of its cycles, for the status and ``unlock`` to show."""
    return f"incsync run on {socket.gethostname()} (pid {os.getpid()})"


def _release_leases(store: Store, keys: Sequence[str], holder: str) -> None:
    """Release what ``holder`` still holds of ``keys``' leases: its cycles die with the process.

    Best effort: a lease that cannot be released expires by itself.
    """
    now = utc_now()
    for key in keys:
        # A store error must not replace the interruption on its way out.
        with suppress(Exception):
            lease = held_lease(store.load(key), now)
            if lease is not None and lease.holder == holder:
                store.release_lease(key, lease)


@contextmanager
def _handling_signals(stop: StopRequest) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        # Signals reach the main thread only; an embedding host keeps its own handlers.
        yield
        return
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _plans(config: Config, sources: Sequence[SourceConfig]) -> tuple[SourcePlan, ...]:
    try:
        return tuple(SourcePlan(s.key, s.interval, account_key=s.account) for s in sources)
    except ConfigurationError as error:
        raise ConfigFileError(config.path, "sources", str(error)) from None


def run_command(
    args: argparse.Namespace,
    config: Config,
    streams: tuple[IO[str], IO[str]],
    secrets: list[str],
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Run cycles as ``incsync run`` was asked; see the module docstring for stopping.

    Args:
        args: The parsed command line (``every``, ``run_all``, ``sources``,
            ``progress_interval``, ``json``).
        config: The validated config.
        streams: Standard output (results) and standard error (progress, notices).
        secrets: Values to mask in anything printed; the tokens saved during the run are added.
        environ: Where secrets are read.

    Returns:
        The exit code.

    Raises:
        ConfigFileError: A source is unknown, a secret's variable is unset, or a setting refused.
        StoreError: The store cannot be opened.
    """
    sources = config.selected(args.sources)
    every: timedelta | None = args.every
    schedule = Schedule(
        plans=_plans(config, sources),
        workers=config.run.workers,
        per_account_limit=config.run.per_account_limit,
        every=every,
        run_all=args.run_all,
    )
    with ExitStack() as stack:
        # Opened first: the state store may hold the sources' tokens.
        store = stack.enter_context(open_store(config, environ, create=True))
        keepers = token_keepers(config, store, secrets.append, environ)
        connectors: dict[str, Connector] = {}
        for source in sources:
            connector = build_connector(config, source, environ, keepers)
            close = getattr(connector, "close", None)
            if callable(close):
                stack.callback(close)
            connectors[source.key] = connector
        # Drawn from here on, once nothing is left to refuse the run.
        board = progress_board(streams[0], streams[1], interval=args.progress_interval)
        stack.callback(board.close)
        stop = StopRequest(board.note)
        stack.enter_context(_handling_signals(stop))
        holder = _holder()
        try:
            failed = run_scheduled(
                SyncEngine(store, holder=holder),
                schedule,
                connectors,
                board,
                stop=stop.event,
                secrets=secrets,
                report=result_json if args.json else result_text,
            )
        except BaseException:
            # A second Ctrl-C: the cycles still running are abandoned on their threads.
            _release_leases(store, [source.key for source in sources], holder)
            raise
    if stop.signal == signal.SIGINT:
        return EXIT_INTERRUPTED
    if every is not None:
        # Only a signal ends --every; its failed cycles are retried and shown by the status.
        return EXIT_OK
    return EXIT_FAILED if failed else EXIT_OK
