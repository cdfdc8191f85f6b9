"""``incsync check``: sign in to each source and make one read request, writing nothing.

Each selected source's connector is built as ``incsync run`` builds it (its secrets from the
environment, its rotating tokens from the token file) and asked for the first page of what changed
since now, on its public read path: for an HTTP source a token refresh where one is due, then one
request, made once (no retries), so a source that is down answers within one timeout. Nothing is
written: the store is not opened, and the token file changes only when a vendor rotates the
refresh token during the check (a refresh the vendor made must be kept, or the next run is locked
out). Each source gets one line (or one JSON object) saying what went wrong, in words a person can
act on; :func:`verdict_of` decides which, from the exception's class alone.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import IO, Any

import attrs

from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.cursor import Window
from incsync.errors import (
    AuthError,
    ConfigurationError,
    RateLimitedError,
    SourceError,
    TransientSourceError,
)
from incsync.integrations.cli._commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, open_store
from incsync.integrations.cli._config import Config, ConfigFileError, SourceConfig
from incsync.integrations.cli._secrets import build_connector, token_keepers
from incsync.protocols import Connector, TokenKeeper
from incsync.redaction import redact
from incsync.timestamps import utc_now
from incsync.views import terminal_safe

__all__ = ["CHECK_SCHEMA", "CheckResult", "Verdict", "check_command", "check_json", "verdict_of"]

CHECK_SCHEMA = "incsync.check/1"
"""The name and version of the ``check --json`` document's schema."""

_ONE_ATTEMPT = HttpOptions(retry=RetryPolicy(max_attempts=1))


class Verdict(enum.Enum):
    """What checking one source found."""

    OK = "ok"
    """The source answered the read."""
    CONFIG_ERROR = "config_error"
    """The source's settings or environment variables are wrong; it was not called."""
    CREDENTIALS_REJECTED = "credentials_rejected"
    """The source refused the credentials (or the token endpoint the refresh token)."""
    THROTTLED = "throttled"
    """The source asked to be called later (a rate limit or a used-up quota)."""
    UNREACHABLE = "unreachable"
    """No answer came: the connection failed or timed out."""
    SOURCE_ERROR = "source_error"
    """The source answered with an error, or with something that could not be read."""
    FAILED = "failed"
    """The connector failed in a way that is no incsync error: most likely a bug."""

    @property
    def text(self) -> str:
        """The verdict in words, for the text line."""
        return self.value.replace("_", " ")


def verdict_of(error: BaseException | None) -> Verdict:
    """Return what ``error`` (``None``: none) says about a source, from its class alone."""
    if error is None:
        return Verdict.OK
    if isinstance(error, ConfigurationError):
        return Verdict.CONFIG_ERROR
    if isinstance(error, AuthError):
        return Verdict.CREDENTIALS_REJECTED
    if isinstance(error, RateLimitedError):
        return Verdict.THROTTLED
    if isinstance(error, TransientSourceError) and error.status_code is None:
        return Verdict.UNREACHABLE
    if isinstance(error, SourceError):
        return Verdict.SOURCE_ERROR
    return Verdict.FAILED


@attrs.frozen
class CheckResult:
    """What checking one source found.

    Args:
        key: The source.
        verdict: What went wrong, if anything.
        seconds: How long the check took.
        error_class: The class of the error, ``None`` when the source answered.
        message: The error's message with secrets masked, ``None`` when the source answered.
    """

    key: str
    verdict: Verdict
    seconds: float
    error_class: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the source answered."""
        return self.verdict is Verdict.OK


def check_text(result: CheckResult) -> str:
    """Return the line reporting one source's check."""
    took = f"({result.seconds:.2f}s)"
    if result.ok:
        return f"{terminal_safe(result.key)}: ok {took}\n"
    problem = terminal_safe(f"{result.error_class}: {result.message}")
    return f"{terminal_safe(result.key)}: {result.verdict.text} {took}: {problem}\n"


def check_json(results: Sequence[CheckResult]) -> str:
    """Return the ``check --json`` document (schema :data:`CHECK_SCHEMA`, see docs/cli.md)."""
    document: dict[str, Any] = {
        "schema": CHECK_SCHEMA,
        "ok": all(result.ok for result in results),
        "sources": [
            {
                "key": result.key,
                "ok": result.ok,
                "verdict": result.verdict.value,
                "error_class": result.error_class,
                "message": result.message,
                "seconds": round(result.seconds, 3),
            }
            for result in results
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def _read_one_page(connector: Connector) -> None:
    """Ask for the first page of what changed since now, then stop the read there."""
    pages = iter(connector.read(Window(start=utc_now())))
    try:
        next(pages, None)
    finally:
        close = getattr(pages, "close", None)
        if callable(close):
            close()


def _check(
    config: Config,
    source: SourceConfig,
    keepers: Callable[[str], TokenKeeper],
    secrets: list[str],
    environ: Mapping[str, str],
) -> CheckResult:
    started = time.perf_counter()
    masks = list(secrets)
    with ExitStack() as stack:
        try:
            connector = build_connector(config, source, environ, keepers, _ONE_ATTEMPT)
            close = getattr(connector, "close", None)
            if callable(close):
                stack.callback(close)
            stack.callback(lambda: masks.extend(connector.secrets()))
            _read_one_page(connector)
        except Exception as error:  # noqa: BLE001 - every failure is the source's verdict
            failure: Exception | None = error
        else:
            failure = None
    seconds = time.perf_counter() - started
    if failure is None:
        return CheckResult(source.key, Verdict.OK, seconds)
    # A config file's error is masked where it could hold a secret already; masked again, its
    # "sources.x.token_env: ..." would read as a token's value (main() says the same).
    message = str(failure) if isinstance(failure, ConfigFileError) else redact(str(failure), masks)
    return CheckResult(
        source.key,
        verdict_of(failure),
        seconds,
        error_class=type(failure).__name__,
        message=message,
    )


def check_command(
    args: argparse.Namespace,
    config: Config,
    out: IO[str],
    secrets: list[str],
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Check the selected sources one after another; report each as its check ends.

    Args:
        args: The parsed command line (``key``, ``json``).
        config: The validated config.
        out: Where the report goes (standard output).
        secrets: Values to mask in what is printed; the tokens saved during the check are added.
        environ: Where secrets are read.

    Returns:
        0 when every source answered, 2 when a source's settings are wrong, else 1.

    Raises:
        ConfigFileError: ``args.key`` names no source of the file.
    """
    sources = config.selected(None if args.key is None else [args.key])
    results = []
    with ExitStack() as stack:
        # Opened only when the tokens live there, and never created: a check writes nothing
        # but a token the vendor rotated while it asked.
        store = (
            None if config.tokens is not None else stack.enter_context(open_store(config, environ))
        )
        keepers = token_keepers(config, store, secrets.append, environ)
        for source in sources:
            result = _check(config, source, keepers, secrets, environ)
            results.append(result)
            if not args.json:
                out.write(check_text(result))
                out.flush()
    if args.json:
        out.write(check_json(results))
    verdicts = {result.verdict for result in results}
    if Verdict.CONFIG_ERROR in verdicts:
        return EXIT_USAGE
    return EXIT_OK if verdicts == {Verdict.OK} else EXIT_FAILED
