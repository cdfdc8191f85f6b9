"""The console's ASGI application: :func:`create_app` puts the pages and the changes on routes.

The handlers are in ``_pages`` (reading) and ``_changes`` (changing); this module adds the
headers every response carries and checks the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import timedelta, tzinfo

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incsync.errors import ConfigurationError
from incsync.humanize import resolve_zone
from incsync.integrations.web._changes import Console
from incsync.integrations.web._i18n import LANGUAGES
from incsync.integrations.web._pages import Authorizer, Settings
from incsync.integrations.web._security import (
    ConsoleKeys,
)
from incsync.protocols import Clock, StateStore
from incsync.status import DEFAULT_STATUS_POLICY, StatusPolicy
from incsync.timestamps import utc_now

__all__ = ["Authorizer", "create_app"]

_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class _SecurityHeaders:
    """Adds the headers every response of the console carries."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", _CONTENT_SECURITY_POLICY.encode("ascii")),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _policy_lookup(
    policy: StatusPolicy | Callable[[str], StatusPolicy],
) -> Callable[[str], StatusPolicy]:
    if isinstance(policy, StatusPolicy):
        return lambda _key: policy
    return policy


def create_app(
    store: StateStore,
    *,
    sources: Sequence[str] = (),
    authorize: Authorizer | None = None,
    secret: str | None = None,
    title: str = "Automated Import",
    zone: str | tzinfo = "UTC",
    policy: StatusPolicy | Callable[[str], StatusPolicy] = DEFAULT_STATUS_POLICY,
    allowed_origins: Collection[str] = (),
    language: str | None = None,
    clock: Clock = utc_now,
    poll_interval: timedelta = timedelta(seconds=1),
    sign_in_duration: timedelta = timedelta(hours=8),
) -> Starlette:
    """Return the console as an ASGI application, to mount in a host's app or serve alone.

    Args:
        store: Where the sources' states, history and action log are read; changes are made
            through :meth:`~incsync.protocols.StateStore.act`.
        sources: Keys listed even before the store knows them (a config file's sources), first
            and in this order; every other stored source follows by key.
        authorize: The host's authorization, asked before every change with the request, the
            action and the source's key: it returns who asks (kept in the action log) or
            ``None`` to refuse. Without it (and without ``secret``), the console is read-only.
        secret: With no ``authorize``, a person who gives this secret on the console's sign-in
            page may make changes under the name they give (``incsync serve`` does this). It
            also signs the CSRF tokens, so every process given it accepts the others' forms;
            without it each process signs with a random key of its own.
        title: The page's title and heading.
        zone: The zone exact times are written in until the viewer's browser names its own.
        policy: The status thresholds, or a function giving each source's by key; it must give
            a key the same policy each time, since statuses are kept between requests.
        allowed_origins: Origins besides the request's own that may post changes
            (``"https://ops.example.com"``), for a console behind a proxy that rewrites the host.
        language: Always this language (``"en"`` or ``"de"``); by default the viewer's choice,
            else their browser's ``Accept-Language``.
        clock: The present; injectable for tests.
        poll_interval: How often the page asks whether the list changed.
        sign_in_duration: How long a sign-in with ``secret`` lasts.

    Raises:
        ConfigurationError: ``secret`` is shorter than 16 characters, ``zone`` is unknown, or
            ``language`` is not one the console ships.
    """
    if language is not None and language not in LANGUAGES:
        raise ConfigurationError(
            f"language must be one of {', '.join(LANGUAGES)} or None, got {language!r}"
        )
    if poll_interval <= timedelta(0) or sign_in_duration <= timedelta(0):
        raise ConfigurationError("poll_interval and sign_in_duration must be longer than zero")
    settings = Settings(
        store=store,
        sources=tuple(dict.fromkeys(sources)),
        authorize=authorize,
        sign_in=authorize is None and secret is not None,
        keys=ConsoleKeys.random() if secret is None else ConsoleKeys.from_secret(secret),
        title=title,
        zone=resolve_zone(zone),
        policy=_policy_lookup(policy),
        allowed_origins=frozenset(allowed_origins),
        clock=clock,
        poll_interval=poll_interval,
        sign_in_duration=sign_in_duration,
        language=language,
    )
    console = Console(settings)
    routes = [
        Route("/", console.list_page, name="list"),
        Route("/rows", console.rows, name="rows"),
        Route("/console.css", console.stylesheet, name="stylesheet"),
        Route("/source", console.source_page, name="source"),
        Route("/confirm", console.confirm_page, name="confirm"),
        Route("/act", console.act, methods=["POST"], name="act"),
        Route("/language", console.language, name="language"),
        Route("/sign-in", console.sign_in_page, name="sign_in_page"),
        Route("/sign-in", console.sign_in, methods=["POST"], name="sign_in"),
        Route("/sign-out", console.sign_out, methods=["POST"], name="sign_out"),
        Mount(
            "/static",
            StaticFiles(packages=[("incsync.integrations.web", "static")]),
            name="static",
        ),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_SecurityHeaders)
    return app
