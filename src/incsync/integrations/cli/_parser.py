"""The command line's grammar: commands, options, help texts with examples, intervals and dates."""

from __future__ import annotations

import argparse
import logging
import os
import re
from datetime import date, datetime, timedelta
from pathlib import Path

from incsync import __version__
from incsync.errors import NaiveDatetimeError
from incsync.mapping._kept import DEFAULT_MAPPED_PAGE
from incsync.timestamps import parse_timestamp

__all__ = ["DEFAULT_CONFIG", "LOG_LEVELS", "build_parser", "parse_interval", "parse_since"]

DEFAULT_CONFIG = "incsync.toml"
"""The config file read when neither ``--config`` nor ``INCSYNC_CONFIG`` names one."""

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
"""The values of ``--log-level`` and the :mod:`logging` levels they name."""

_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_UNITS["s"] = timedelta(seconds=1)
_INTERVAL = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")

_USAGE = "  2    usage or config error (the message names the file and key)\n"
_STORE = "  1    the store could not be used\n"

EXIT_CODES = (
    "exit codes (each command's --help lists its own):\n"
    "  0    success\n"
    "  1    the store could not be used, or what was asked failed: a cycle (run), a source's\n"
    "       check (check), a lease still held (unlock)\n"
    f"{_USAGE}"
    "  130  interrupted by Ctrl-C\n"
)

_COMMAND_EXIT_CODES = {
    "run": "  0    every cycle completed, was skipped, or was stopped by a reset, a cancel or\n"
    "       SIGTERM; or none was due. With --every: after SIGTERM\n"
    "  1    a cycle failed (with --once), or the store could not be used\n"
    f"{_USAGE}"
    "  130  interrupted by Ctrl-C (SIGINT); SIGTERM ends the run at the running cycles'\n"
    "       next page\n",
    "status": "  0    the statuses were shown\n"
    f"{_STORE}{_USAGE}"
    "with --check: 0 OK, 1 WARNING (a source is orange), 2 CRITICAL (one is red), 3 UNKNOWN\n",
    "check": "  0    every source checked answered\n"
    "  1    a source did not: credentials rejected, unreachable, throttled, or an error\n"
    "  2    usage or config error, in the file or in a source's settings or variables\n"
    "  130  interrupted by Ctrl-C\n",
    "cursor": f"  0    the cursor was shown\n{_STORE}{_USAGE}",
    "reset": "  0    done\n"
    f"{_STORE}"
    "  2    usage or config error; with --since, also a date without a zone, or a source whose\n"
    "       reset has not completed its read yet\n",
    "cancel": f"  0    done\n{_STORE}{_USAGE}",
    "resume": f"  0    done\n{_STORE}{_USAGE}",
    "unlock": "  0    released, or no cycle held the lease\n"
    "  1    a cycle holds the lease (without --force), or the store could not be used\n"
    f"{_USAGE}",
    "rejected": f"  0    the list was shown\n{_STORE}{_USAGE}",
    "history": f"  0    the cycles were shown\n{_STORE}{_USAGE}",
    "remap": f"  0    the rows were re-mapped (or were at the mapping's version already)\n"
    f"{_STORE}{_USAGE}",
    "transactions": f"  0    the transactions were written\n{_STORE}{_USAGE}",
    "serve": "  0    stopped by Ctrl-C or SIGTERM\n"
    "  1    the store could not be used, or the port could not be opened\n"
    "  2    usage or config error, or INCSYNC_CONSOLE_SECRET missing or shorter than 16\n"
    "       characters, or the web extra not installed\n",
}


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65_536:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {text!r}")
    return port


def parse_interval(text: str) -> timedelta:
    """Return the interval written as ``1h``, ``30m``, ``90s``, ``1h30m`` or ``2d``.

    Args:
        text: Whole numbers with units ``d``, ``h``, ``m`` and ``s``, largest first.

    Returns:
        The interval.

    Raises:
        argparse.ArgumentTypeError: The text is not such an interval, or it is zero.
    """
    match = _INTERVAL.fullmatch(text.strip().lower())
    if match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an interval; write it like 1h, 30m, 90s or 1h30m"
        )
    interval = sum(
        (
            int(count) * unit
            for count, unit in zip(match.groups(), _UNITS.values(), strict=True)
            if count
        ),
        timedelta(0),
    )
    if interval <= timedelta(0):
        raise argparse.ArgumentTypeError("the interval must be longer than zero")
    return interval


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_since(text: str) -> datetime:
    """Return the time ``--since`` names: an ISO 8601 date-time with a zone, or a date.

    A date alone (``2026-11-01``) is the start of that day in UTC. A date-time must say its zone
    (``Z`` or an offset): which local time a bare one meant cannot be known, and a guess moved by
    hours would read too little.

    Raises:
        argparse.ArgumentTypeError: The text is neither, or a date-time has no zone.
    """
    value = text.strip()
    try:
        return parse_timestamp(value, "--since", assume_utc=_DATE.fullmatch(value) is not None)
    except NaiveDatetimeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone; add Z for UTC or an offset, as in {value}Z or "
            f"{value}+02:00 (a date alone, like 2026-11-01, is midnight UTC)"
        ) from None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (2026-11-01, midnight UTC) or a date-time with a zone "
            "(2026-11-01T08:00:00Z, 2026-11-01T10:00:00+02:00)"
        ) from None


def parse_date(text: str) -> date:
    """Return the business date ``--since`` or ``--until`` names (``2026-11-01``).

    Raises:
        argparse.ArgumentTypeError: The text is not a date of that form.
    """
    value = text.strip()
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-01")


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise argparse.ArgumentTypeError("seconds must be zero or more")
    return seconds


def _positive_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError("the count must be 1 or more")
    return count


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    examples: str,
    config: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        parents=[config],
        help=summary,
        description=summary,
        epilog=f"examples:\n{examples}\nexit codes:\n{_COMMAND_EXIT_CODES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``incsync`` and its commands."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get("INCSYNC_CONFIG") or DEFAULT_CONFIG),
        metavar="FILE",
        help=f"the TOML config file (default: $INCSYNC_CONFIG, else {DEFAULT_CONFIG})",
    )
    config.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also write incsync's log to stderr (each cycle's counts, retries, resets…), as "
        "--log-level info does",
    )
    config.add_argument(
        "--log-level",
        choices=tuple(LOG_LEVELS),
        type=str.lower,
        metavar="LEVEL",
        help="log to stderr from this level on: debug, info, warning or error (default: error, "
        "or info with -v)",
    )
    config.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or as one JSON object per line; each names its "
        "source and cycle",
    )
    parser = argparse.ArgumentParser(
        prog="incsync",
        description="Incremental sync of business systems into a store, from a TOML config file.",
        epilog=(
            "examples:\n"
            "  incsync run --config sources.toml --once\n"
            "  incsync run --config sources.toml --every 1m\n"
            "  incsync status --config sources.toml --json\n"
            "  incsync COMMAND --help\n\n"
            f"{EXIT_CODES}"
            "\nThe config file format is described in docs/cli.md."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"incsync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command(
        commands,
        "run",
        "run the cycles of the sources that are due (once, or until stopped)",
        "  incsync run --config sources.toml --once\n"
        "  incsync run --config sources.toml --once --all --source hubspot-acme\n"
        "  incsync run --config sources.toml --every 1m\n"
        "  incsync run --config sources.toml --json | jq .outcome\n",
        config,
    )
    when = run.add_mutually_exclusive_group()
    when.add_argument(
        "--once",
        action="store_true",
        help="run a cycle of every source due now, then exit (default); a source never synced "
        "is due at once",
    )
    when.add_argument(
        "--every",
        type=parse_interval,
        metavar="TICK",
        help="run until stopped, looking for due sources at least every TICK (1m, 5m, 90s…) "
        "and as soon as one falls due; Ctrl-C or SIGTERM ends it once the pages in flight are "
        "written",
    )
    run.add_argument(
        "--all",
        action="store_true",
        dest="run_all",
        help="start every selected source now, due or not (with --every: at the first look)",
    )
    run.add_argument(
        "--source",
        action="append",
        dest="sources",
        metavar="KEY",
        help="only this source (repeatable; default: every source of the file)",
    )
    run.add_argument(
        "--progress-interval",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default: 10)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print each cycle's result as one line of JSON on stdout (progress and notices "
        "stay on stderr)",
    )

    status = _command(
        commands,
        "status",
        "show every source's status: colour, label, last change, last sync, reason",
        "  incsync status --config sources.toml\n"
        "  incsync status --config sources.toml --json | jq '.sources[].color'\n"
        "  incsync status --config sources.toml --html status.html\n"
        "  incsync status --config sources.toml --check   # for Nagios, Icinga, cron…\n",
        config,
    )
    form = status.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON for scripts (see docs)")
    form.add_argument(
        "--html", type=Path, metavar="FILE", help="write the standalone HTML status page to FILE"
    )
    form.add_argument(
        "--check",
        action="store_true",
        help="print one monitoring line and exit 0 OK (all green or grey), 1 WARNING (orange), "
        "2 CRITICAL (red) or 3 UNKNOWN (the statuses cannot be read)",
    )
    status.add_argument(
        "--zone", default="UTC", help="IANA time zone of exact times (default: UTC)"
    )

    check = _command(
        commands,
        "check",
        "sign in to each source and make one read request; write nothing, report each source",
        "  incsync check --config sources.toml\n"
        "  incsync check --config sources.toml hubspot-acme\n"
        "  incsync check --config sources.toml --json | jq '.sources[] | select(.ok | not)'\n",
        config,
    )
    check.add_argument(
        "key", metavar="KEY", nargs="?", help="only this source (default: every source of the file)"
    )
    check.add_argument("--json", action="store_true", help="print JSON for scripts (see docs)")

    cursor = _command(
        commands,
        "cursor",
        "show where a source's next cycle reads from: its cursor, generation, marks, last change",
        "  incsync cursor --config sources.toml hubspot-acme\n"
        "  incsync cursor --config sources.toml hubspot-acme --json\n",
        config,
    )
    cursor.add_argument("key", metavar="KEY", help="the source's key in the config file")
    cursor.add_argument("--json", action="store_true", help="print JSON for scripts (see docs)")

    for name, summary, examples in (
        (
            "reset",
            "make the next cycle re-read and re-apply every record (deletes nothing); with "
            "--since, only what changed from that date on (sweeps nothing)",
            "  incsync reset --config sources.toml hubspot-acme\n"
            "  incsync reset --config sources.toml hubspot-acme --since 2026-11-01\n"
            "  incsync reset --config sources.toml hubspot-acme --since 2026-11-01T08:00:00Z\n",
        ),
        (
            "cancel",
            "stop syncing a source until it is resumed or reset (deletes nothing)",
            "  incsync cancel --config sources.toml hubspot-acme\n",
        ),
        (
            "resume",
            "let a cancelled or stopped source sync again",
            "  incsync resume --config sources.toml hubspot-acme\n",
        ),
    ):
        command = _command(commands, name, summary, examples, config)
        command.add_argument("key", metavar="KEY", help="the source's key in the config file")
        if name == "reset":
            command.add_argument(
                "--since",
                type=parse_since,
                metavar="DATE",
                help="re-read from DATE instead of from the beginning: the cursor (and any "
                "side channel's mark) moves back to it, never forward; no reset, nothing swept. "
                "DATE is 2026-11-01 (midnight UTC) or a date-time with a zone, "
                "2026-11-01T08:00:00Z or 2026-11-01T10:00:00+02:00",
            )

    unlock = _command(
        commands,
        "unlock",
        "release a source's lease, left held by a cycle whose process is gone",
        "  incsync unlock --config sources.toml hubspot-acme\n"
        "  incsync unlock --config sources.toml hubspot-acme --force\n",
        config,
    )
    unlock.add_argument("key", metavar="KEY", help="the source's key in the config file")
    unlock.add_argument(
        "--force",
        action="store_true",
        help="release it even though it has not expired (its holder's later writes are refused)",
    )

    rejected = _command(
        commands,
        "rejected",
        "list the records of a source that were set aside as malformed, with reasons",
        "  incsync rejected --config sources.toml hubspot-acme\n"
        "  incsync rejected --config sources.toml hubspot-acme --json\n",
        config,
    )
    rejected.add_argument("key", metavar="KEY", help="the source's key in the config file")
    rejected.add_argument("--json", action="store_true", help="print JSON for scripts")

    history = _command(
        commands,
        "history",
        "list a source's recent cycles, newest first: outcome, counts, duration, error",
        "  incsync history --config sources.toml hubspot-acme\n"
        "  incsync history --config sources.toml hubspot-acme --limit 24\n"
        "  incsync history --config sources.toml hubspot-acme --json | jq '.[0].outcome'\n",
        config,
    )
    history.add_argument("key", metavar="KEY", help="the source's key in the config file")
    history.add_argument(
        "--json", action="store_true", help="print a JSON array for scripts, newest first"
    )
    history.add_argument(
        "--limit",
        type=_positive_count,
        metavar="N",
        help="only the N newest cycles (default: every cycle the store keeps)",
    )
    history.add_argument(
        "--zone", default="UTC", help="IANA time zone of the times shown (default: UTC)"
    )

    remap = _command(
        commands,
        "remap",
        "recompute a source's mapped transactions from the stored records with its current "
        "mapping, without calling the source; resumes where an interrupted one stopped",
        "  incsync remap --config sources.toml hubspot-deals\n"
        "  incsync remap --config sources.toml hubspot-deals --json | jq .written\n",
        config,
    )
    remap.add_argument("key", metavar="KEY", help="the source's key in the config file")
    remap.add_argument(
        "--page-size",
        type=_positive_count,
        default=DEFAULT_MAPPED_PAGE,
        metavar="N",
        help=f"records re-mapped per database transaction (default: {DEFAULT_MAPPED_PAGE})",
    )
    remap.add_argument("--json", action="store_true", help="print the result as JSON")

    transactions = _command(
        commands,
        "transactions",
        "export a source's mapped transactions by business date, as CSV or JSON Lines",
        "  incsync transactions --config sources.toml hubspot-deals --since 2026-11-01 "
        "--until 2026-12-01\n"
        "  incsync transactions --config sources.toml hubspot-deals --format jsonl --live\n",
        config,
    )
    transactions.add_argument("key", metavar="KEY", help="the source's key in the config file")
    transactions.add_argument(
        "--since",
        type=parse_date,
        metavar="DATE",
        help="the first business date included (2026-11-01; default: the first)",
    )
    transactions.add_argument(
        "--until",
        type=parse_date,
        metavar="DATE",
        help="the first business date no longer included (default: none)",
    )
    transactions.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        default="csv",
        help="CSV with a header line (default), or one JSON object per line",
    )
    transactions.add_argument(
        "--live",
        action="store_true",
        help="leave out void transactions (voided, deleted or gone at the source)",
    )

    serve = _command(
        commands,
        "serve",
        "serve the web console: every source's status, live, with reset, cancel and resume "
        "for whoever signs in with the secret in INCSYNC_CONSOLE_SECRET",
        "  incsync serve --config sources.toml   # with INCSYNC_CONSOLE_SECRET set\n"
        "  incsync serve --config sources.toml --host 0.0.0.0 --port 8080\n",
        config,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=8000, help="the port to listen on (default: 8000)"
    )
    serve.add_argument(
        "--zone",
        default="UTC",
        help="IANA time zone of exact times until the viewer's browser names its own "
        "(default: UTC)",
    )
    return parser
