"""Connecting to PostgreSQL: how long an attempt may take, and libpq's refusal said in one line.

Pure functions over the parsed connection parameters and libpq's message, kept apart from the
store's I/O so they can be read and tested alone. No driver is needed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from incsync.redaction import redact

__all__ = ["CONNECT_TIMEOUT_SECONDS", "connect_timeout_missing", "refusal_message"]

CONNECT_TIMEOUT_SECONDS = 5
"""How long one connection attempt waits when neither the conninfo nor the environment says.

libpq's own default is to wait two minutes, so a host that drops packets would hang a worker.
"""

# The parameters that say which server, database and role were tried; never the password.
_TARGET_KEYS = ("host", "hostaddr", "port", "dbname", "user")

# What libpq puts before its reason: psycopg's and libpq's framing, then the server's severity.
_FRAMING = re.compile(
    r"^(?:connection failed: )?(?:connection to server (?:at|on) .*? failed: )?(?:FATAL: +)?"
)


def connect_timeout_missing(params: Mapping[str, object], environ: Mapping[str, str]) -> bool:
    """Whether neither the connection parameters nor ``PGCONNECT_TIMEOUT`` bound an attempt."""
    return "connect_timeout" not in params and not environ.get("PGCONNECT_TIMEOUT")


def refusal_message(
    params: Mapping[str, object], doing: str, libpq_message: str, secrets: Iterable[str]
) -> str:
    """Return one line naming the server tried and libpq's reason for refusing the connection.

    Args:
        params: The parsed connection parameters; only host, port, database and user are named.
        doing: What the connection was for ("load the state of 'acme'").
        libpq_message: The driver's error text; only its first line, unframed, is kept.
        secrets: Values masked wherever they appear (the password).

    Returns:
        ``cannot connect to PostgreSQL (host=db port=5432 dbname=app user=sync) to <doing>:
        <reason>``.
    """
    target = " ".join(f"{key}={params[key]}" for key in _TARGET_KEYS if params.get(key))
    first_line = libpq_message.strip().splitlines()[0] if libpq_message.strip() else ""
    reason = _FRAMING.sub("", first_line).strip() or "no reason given"
    where = f" ({target})" if target else ""
    return redact(f"cannot connect to PostgreSQL{where} to {doing}: {reason}", secrets)
