"""The ``incsync`` command: sync the sources of a TOML config file and manage their state.

``incsync run`` runs the due cycles (once, or until stopped), ``incsync status`` shows
every source's status as a table, JSON or an HTML page, ``incsync check`` tries each source's
credentials with one read, and ``cursor``, ``reset`` (``--since``: a rewind), ``cancel``,
``resume``, ``unlock``, ``rejected`` and ``history`` act on one source, and ``incsync serve``
runs the web console (docs/console.md). The reference, with the config file's format and the exit
codes, is docs/cli.md; :func:`main` is also callable from Python with a list
of arguments.

Exit codes: 0 success; 1 a cycle failed, a source failed its check, the store could not be used,
``unlock`` met a lease still held, or rich (the ``cli`` extra) is not installed; 2 a usage or
config error; 130 interrupted by Ctrl-C. ``incsync status --check`` exits as a monitoring check
does (:class:`._output.CheckState`: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

Everything printed that came from outside (error messages, keys, record ids, reasons, log lines)
passes through :func:`incsync.views.terminal_safe`, so a source cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone

from incsync.errors import ConfigurationError, IncsyncError
from incsync.integrations.cli._check import check_command
from incsync.integrations.cli._commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    change_command,
    cursor_command,
    history_command,
    rejected_command,
    status_command,
    unlock_command,
)
from incsync.integrations.cli._config import Config, ConfigFileError, load_config
from incsync.integrations.cli._mapped import remap_command, transactions_command
from incsync.integrations.cli._output import CheckState, check_unknown
from incsync.integrations.cli._parser import LOG_LEVELS, build_parser
from incsync.integrations.cli._run import run_command
from incsync.integrations.cli._secrets import secret_values
from incsync.integrations.cli._serve import serve_command
from incsync.redaction import redact, redact_lines, redacted_traceback
from incsync.telemetry import CycleContextFilter
from incsync.views import terminal_safe

__all__ = ["main"]

_NEEDS_RICH = (
    "the incsync command needs rich, which its cli extra installs: pip install 'incsync[cli]'"
)


class _RedactingFilter(logging.Filter):
    """Masks the config's secret values in every log line, whatever logged it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        # Kept, not copied: tokens renewed during the run are added to the same list.
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        # Line by line: a message may carry a traceback, longer than one message's bound.
        record.msg, record.args = redact_lines(record.getMessage(), self._secrets), None
        if record.exc_info is not None and record.exc_info[1] is not None and not record.exc_text:
            # A formatter writes exc_text when set, instead of formatting exc_info unmasked.
            record.exc_text = redacted_traceback(record.exc_info[1], self._secrets)
        return True


def _where(record: logging.LogRecord) -> str:
    """Name the source and cycle a record was logged in (by :class:`CycleContextFilter`)."""
    source_key = getattr(record, "source_key", None)
    if source_key is None:
        return ""
    cycle_id = getattr(record, "cycle_id", None)
    return f" [{source_key}]" if cycle_id is None else f" [{source_key} cycle {cycle_id}]"


class _TerminalSafeFormatter(logging.Formatter):
    """Writes log lines that name their source and cycle, and cannot drive a terminal.

    Quotes from sources (error bodies) may hold control characters: each line goes through
    :func:`~incsync.views.terminal_safe`; a traceback keeps its breaks.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.where = _where(record)
        return "\n".join(terminal_safe(line) for line in super().format(record).split("\n"))


class _JsonFormatter(logging.Formatter):
    """Writes each record as one line of JSON, for log collectors.

    ``json.dumps`` escapes every control character and everything beyond ASCII (``\u001b``), so
    a line cannot drive a terminal either, and a traceback stays within its line.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "source_key": getattr(record, "source_key", None),
            "cycle_id": getattr(record, "cycle_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["traceback"] = record.exc_text
        return json.dumps(line, ensure_ascii=True, default=str)


def _log_level(args: argparse.Namespace) -> int:
    """The level the command logs from: ``--log-level``, else INFO with ``-v``, else ERROR."""
    if args.log_level is not None:
        return LOG_LEVELS[args.log_level]
    # Results are printed on stdout already; the log adds the engine's detail on request.
    return logging.INFO if args.verbose else logging.ERROR


class _StandardError:
    """Standard error as it is at each write, not as it was when logging was set up.

    While progress bars are drawn, rich stands in for it and prints above them (see
    :mod:`._progress`).
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def _logging_to_stderr(args: argparse.Namespace, secrets: Sequence[str]) -> Iterator[None]:
    """Send incsync's log to stderr, masked, for the command's duration; then undo it."""
    handler = logging.StreamHandler(_StandardError())
    handler.setFormatter(
        _JsonFormatter() if args.log_format == "json" else _TerminalSafeFormatter()
    )
    handler.addFilter(CycleContextFilter())
    handler.addFilter(_RedactingFilter(secrets))
    logger = logging.getLogger("incsync")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(_log_level(args))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _dispatch(args: argparse.Namespace, config: Config, secrets: list[str]) -> int:
    if args.command == "run":
        return run_command(args, config, (sys.stdout, sys.stderr), secrets)
    if args.command == "status":
        return status_command(args, config, sys.stdout)
    if args.command == "rejected":
        return rejected_command(args, config, sys.stdout)
    if args.command == "history":
        return history_command(args, config, sys.stdout)
    if args.command == "remap":
        return remap_command(args, config, sys.stdout)
    if args.command == "transactions":
        return transactions_command(args, config, sys.stdout)
    if args.command == "unlock":
        return unlock_command(args, config, (sys.stdout, sys.stderr))
    if args.command == "cursor":
        return cursor_command(args, config, sys.stdout)
    if args.command == "check":
        return check_command(args, config, sys.stdout, secrets)
    if args.command == "serve":
        return serve_command(args, config, sys.stderr, os.environ, secrets)
    return change_command(args, config, sys.stdout)


def _error(args: argparse.Namespace, message: str, code: int) -> int:
    """Report a command that could not do its work; return its exit code."""
    if getattr(args, "check", False):
        # A monitoring check that cannot read the statuses knows nothing about the sources:
        # UNKNOWN, on standard output where the monitor reads, whatever the cause.
        sys.stdout.write(check_unknown(message))
        return CheckState.UNKNOWN
    sys.stderr.write(f"incsync: error: {terminal_safe(message)}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``incsync`` command line.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code: 0 success, 1 a cycle failed, a source failed its check, the store failed,
        ``unlock`` met a lease still held or rich is missing, 2 a usage or config error, 130
        interrupted by Ctrl-C; for ``status --check`` the check's state.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exiting:  # --help, --version and usage errors end here
        return exiting.code if isinstance(exiting.code, int) else EXIT_USAGE
    if importlib.util.find_spec("rich") is None:
        # One requirement for every command and every output, so a run from cron and one on a
        # terminal cannot differ in whether they work.
        return _error(args, _NEEDS_RICH, EXIT_FAILED)
    secrets: list[str] = []
    try:
        config = load_config(args.config)
        secrets = secret_values(config)
        with _logging_to_stderr(args, secrets):
            return _dispatch(args, config, secrets)
    except ConfigFileError as error:
        # Masked already where it could hold a secret; masking again would garble it, since
        # the redaction patterns read "sources.x.token: secrets are…" as a token's value.
        return _error(args, str(error), EXIT_USAGE)
    except ConfigurationError as error:
        return _error(args, redact(str(error), secrets), EXIT_USAGE)
    except IncsyncError as error:
        return _error(args, f"{type(error).__name__}: {redact(str(error), secrets)}", EXIT_FAILED)
    except KeyboardInterrupt:
        sys.stderr.write("incsync: interrupted\n")
        return EXIT_INTERRUPTED
