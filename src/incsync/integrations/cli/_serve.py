"""``incsync serve``: the web console of a config file's sources, on uvicorn.

Changes need the console's secret, read from ``INCSYNC_CONSOLE_SECRET`` (never from the command
line, where other users of the machine could read it): a person signs in with it and a name,
and the action log keeps that name. Reading the list needs nothing, so the console is meant for
a private network or behind the host's own sign-in.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
from collections.abc import Mapping
from typing import IO

from incsync.errors import ConfigurationError, IncsyncError
from incsync.integrations._console_secret import SECRET_HINT, check_secret
from incsync.integrations.cli._commands import EXIT_OK, open_store, policy_of
from incsync.integrations.cli._config import Config

__all__ = ["SECRET_VARIABLE", "serve_command"]

SECRET_VARIABLE = "INCSYNC_CONSOLE_SECRET"
"""The environment variable that holds the console's secret."""

_NEEDS_WEB = "incsync serve needs the web extra: pip install 'incsync[web]'"


def console_secret(environ: Mapping[str, str]) -> str:
    """Return the console's secret from the environment.

    Raises:
        ConfigurationError: It is not set, or too short.
    """
    secret = environ.get(SECRET_VARIABLE, "")
    if not secret:
        raise ConfigurationError(
            f"incsync serve needs a secret in the environment variable {SECRET_VARIABLE}: "
            "whoever gives it on the console's sign-in page may reset, cancel and resume "
            f"sources; {SECRET_HINT}"
        )
    return check_secret(secret)


def serve_command(
    args: argparse.Namespace,
    config: Config,
    err: IO[str],
    environ: Mapping[str, str],
    secrets: list[str],
) -> int:
    """Serve the console until interrupted.

    Args:
        args: The parsed command line (``host``, ``port``, ``zone``).
        config: The config.
        err: Where the address is announced.
        environ: Where the secret is read.
        secrets: The values masked in the log; the console's secret is added.

    Raises:
        ConfigurationError: The secret is missing or too short, the web extra is not installed,
            or ``--zone`` is unknown.
        IncsyncError: The address cannot be listened on.
    """
    secret = console_secret(environ)
    secrets.append(secret)
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("starlette") is None:
        raise ConfigurationError(_NEEDS_WEB)
    import uvicorn

    from incsync.integrations.web import create_app

    path = config.store.path
    fresh = config.store.kind != "postgres" and path is not None and not path.exists()
    # A console started before the first run shows every source as starting, as run would.
    with open_store(config, environ, create=True) as store:
        app = create_app(
            store,
            sources=[source.key for source in config.sources],
            secret=secret,
            zone=args.zone,
            policy=lambda key: policy_of(config, key),
        )
        if fresh:
            err.write(f"incsync: {path} did not exist; it was created empty\n")
        announcement = (
            f"incsync: console of {config.path} at http://{args.host}:{args.port}/ "
            "(Ctrl-C stops it)\n"
        )

        class _Announced(uvicorn.Server):
            """Says where the console is once it listens there, not before."""

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if self.started:
                    err.write(announcement)
                    err.flush()

        served = uvicorn.Config(
            app, host=args.host, port=args.port, log_level="warning", access_log=False
        )
        server = _Announced(served)
        try:
            server.run()
        except SystemExit:
            # uvicorn exits when it cannot listen; it has logged why.
            if server.started:
                raise
            raise IncsyncError(
                f"cannot listen on {args.host}:{args.port}; is another process using the port?"
            ) from None
    return EXIT_OK
