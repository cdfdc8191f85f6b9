"""The command line's grammar: commands, options, help texts with examples, and intervals."""

from __future__ import annotations

import argparse
import logging
import os
import re
from datetime import timedelta
from pathlib import Path

from incsync import __version__

__all__ = ["DEFAULT_CONFIG", "LOG_LEVELS", "build_parser", "parse_interval"]

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

EXIT_CODES = """\
exit codes:
  0    success
  1    a cycle failed, the store could not be used, or unlock met a lease still held
  2    usage or config error (the message names the file and key)
  130  interrupted by Ctrl-C (SIGINT); SIGTERM ends the run at the running cycles' next page
status --check: 0 OK, 1 WARNING (a source is orange), 2 CRITICAL (one is red), 3 UNKNOWN
"""


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


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise argparse.ArgumentTypeError("seconds must be zero or more")
    return seconds


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
        epilog=f"examples:\n{examples}\n{EXIT_CODES}",
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
        help="also log each cycle's details to stderr (the same as --log-level info)",
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

    for name, summary in (
        ("reset", "make the next cycle re-read and re-apply every record (deletes nothing)"),
        ("cancel", "stop syncing a source until it is resumed or reset (deletes nothing)"),
        ("resume", "let a cancelled or stopped source sync again"),
    ):
        command = _command(
            commands,
            name,
            summary,
            f"  incsync {name} --config sources.toml hubspot-acme\n",
            config,
        )
        command.add_argument("key", metavar="KEY", help="the source's key in the config file")

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
    return parser
