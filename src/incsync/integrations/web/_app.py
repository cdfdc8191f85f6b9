"""The console's ASGI application: the list, a source's page, and the actions, on Starlette.

Reads go straight to the store (in Starlette's thread pool, so a slow store never blocks the
event loop); a change goes through four gates, in this order, each refusing with 403 and
changing nothing: the request comes from the console's own origin, carries the CSRF token of
its cookie, the host's authorization names who asks, and the source is one the console lists.
Then the store makes the change and keeps who made it in the same transaction
(:meth:`~incsync.protocols.StateStore.act`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any
from urllib.parse import parse_qs, urlencode

import attrs
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incsync.actions import Action, ActionEntry, check_actor
from incsync.errors import ConfigurationError
from incsync.history import SUMMARY_CYCLES
from incsync.humanize import resolve_zone
from incsync.integrations.web._i18n import LANGUAGES, Texts, negotiate_language
from incsync.integrations.web._listing import SEVERITY, ListQuery, select_page
from incsync.integrations.web._security import (
    ConsoleKeys,
    SignedName,
    csrf_token,
    new_nonce,
    same_origin,
    valid_csrf,
)
from incsync.integrations.web._view import (
    chart_bars,
    element_id,
    history_lines,
    history_sentence,
    reason_sentences,
    row_view,
    set_aside_view,
    time_view,
)
from incsync.integrations.web._words import (
    ACTION_CONSEQUENCES,
    ACTION_NAMES,
    COLOR_NAMES,
    SORT_NAMES,
)
from incsync.protocols import Clock, StateStore
from incsync.state import SourceState, new_state
from incsync.status import DEFAULT_STATUS_POLICY, StatusPolicy, status_of
from incsync.timestamps import utc_now
from incsync.views import PALETTE, terminal_safe

__all__ = ["Authorizer", "create_app"]

logger = logging.getLogger("incsync.console")

Authorizer = Callable[[Request, Action, str], "str | None"]
"""The host's authorization: given the request, the action and the source's key, return the name
of who asks (kept in the action log) to allow it, or ``None`` to refuse it."""

_CSRF_COOKIE = "incsync_csrf"
_ZONE_COOKIE = "incsync_zone"
_LANGUAGE_COOKIE = "incsync_lang"
_SIGN_IN_COOKIE = "incsync_signed_in"
_BODY_LIMIT = 16 * 1024
_HISTORY_SHOWN = 50
_CHART_CYCLES = 30
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


@attrs.frozen
class _Settings:
    store: StateStore
    sources: tuple[str, ...]
    authorize: Authorizer | None
    sign_in: bool
    keys: ConsoleKeys
    title: str
    zone: tzinfo
    policy: Callable[[str], StatusPolicy]
    allowed_origins: frozenset[str]
    clock: Clock
    poll_interval: timedelta
    sign_in_duration: timedelta
    language: str | None


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("incsync.integrations.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Names and words from hosts and sources: autoescaping makes markup inert, this makes control
    # characters (terminal escapes, bidi overrides) visible as escapes.
    environment.filters["visible"] = terminal_safe
    return environment


class _Console:
    """The request handlers, over one set of settings."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.templates = _environment()

    # -- the viewer ----------------------------------------------------------------------------

    def _texts(self, request: Request) -> Texts:
        settings = self.settings
        language = settings.language or request.cookies.get(_LANGUAGE_COOKIE)
        if language not in LANGUAGES:
            language = negotiate_language(request.headers.get("accept-language"))
        zone = settings.zone
        asked = request.cookies.get(_ZONE_COOKIE)
        if asked:
            # A zone this machine does not know: the console's own is shown.
            with contextlib.suppress(ConfigurationError):
                zone = resolve_zone(asked)
        return Texts(language, zone, settings.clock())

    def _nonce(self, request: Request) -> tuple[str, bool]:
        """Return the browser's CSRF cookie, or a new one (and that it must be set)."""
        nonce = request.cookies.get(_CSRF_COOKIE)
        return (nonce, False) if nonce else (new_nonce(), True)

    def _actor(self, request: Request, action: Action, key: str) -> str | None:
        settings = self.settings
        if settings.authorize is not None:
            name = settings.authorize(request, action, key)
            return None if name is None else check_actor(name)
        if settings.sign_in:
            return self._signed_in(request)
        return None

    def _signed_in(self, request: Request) -> str | None:
        if not self.settings.sign_in:
            return None
        signed = SignedName.read(
            self.settings.keys, request.cookies.get(_SIGN_IN_COOKIE), self.settings.clock()
        )
        return None if signed is None else signed.name

    def _can_act(self) -> bool:
        return self.settings.authorize is not None or self.settings.sign_in

    def _render(
        self,
        request: Request,
        template: str,
        texts: Texts,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        nonce, new = self._nonce(request)
        page = self.templates.get_template(template).render(
            _=texts.gettext,
            ngettext=texts.ngettext,
            texts=texts,
            title=self.settings.title,
            csrf=csrf_token(self.settings.keys, nonce),
            url=lambda name, **params: _url(request, name, params),
            static_url=lambda path: request.url_for("static", path=path).path,
            palette_url=request.url_for("palette").path,
            can_act=self._can_act(),
            sign_in=self.settings.sign_in,
            signed_in=self._signed_in(request),
            here=_here(request),
            languages=LANGUAGES,
            **context,
        )
        response = HTMLResponse(page, status_code=status_code)
        response.headers["cache-control"] = "no-store"
        response.headers["content-language"] = texts.language
        if new:
            self._set_cookie(request, response, _CSRF_COOKIE, nonce, http_only=True)
        return response

    @staticmethod
    def _set_cookie(
        request: Request,
        response: Response,
        name: str,
        value: str,
        *,
        http_only: bool,
        max_age: int | None = None,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=request.scope.get("root_path") or "/",
            secure=request.url.scheme == "https",
            httponly=http_only,
            samesite="strict",
        )

    def _refuse(self, request: Request, texts: Texts, message: str, status: int) -> HTMLResponse:
        return self._render(request, "refused.html", texts, status, message=message)

    # -- reading -------------------------------------------------------------------------------

    def _states(self) -> list[SourceState]:
        """The configured sources, then every other stored one, by key."""
        stored = {state.key: state for state in self.settings.store.list_states()}
        listed = [
            stored.pop(key) if key in stored else new_state(key) for key in self.settings.sources
        ]
        return listed + [stored[key] for key in sorted(stored)]

    def _known(self, key: str) -> bool:
        return key in self.settings.sources or self.settings.store.load(key) != new_state(key)

    def _list_context(self, request: Request, texts: Texts) -> dict[str, Any]:
        settings = self.settings
        query = ListQuery.from_params(request.query_params)
        now = texts.now
        rows = [
            (state, status_of(state, now=now, policy=settings.policy(state.key)))
            for state in self._states()
        ]
        page = select_page(rows, query)
        histories = settings.store.history_summaries(
            [state.key for state, _status in page.rows], SUMMARY_CYCLES
        )
        return {
            "query": query,
            "page": page,
            "rows": [
                row_view(texts, state, status, histories.get(state.key))
                for state, status in page.rows
            ],
            "colors": [(color, COLOR_NAMES[color], page.colors[color]) for color in SEVERITY],
            "sorts": [(sort.value, name) for sort, name in SORT_NAMES.items()],
            "action_names": ACTION_NAMES,
            "list_url": lambda **changes: _url(request, "list", query.params(**changes)),
        }

    def list_page(self, request: Request) -> Response:
        texts = self._texts(request)
        context = self._list_context(request, texts)
        return self._render(
            request,
            "list.html",
            texts,
            rows_url=_url(request, "rows", context["query"].params()),
            poll_ms=int(self.settings.poll_interval.total_seconds() * 1000),
            **context,
        )

    def palette(self, _request: Request) -> Response:
        """The circles' colours as CSS variables, from the one palette (``incsync.views``)."""
        rules = "".join(f"--dot-{color.value}:{hex_color};" for color, hex_color in PALETTE.items())
        return Response(
            f":root{{{rules}}}\n",
            media_type="text/css",
            headers={"cache-control": "public, max-age=3600"},
        )

    def rows(self, request: Request) -> Response:
        """The list's changing part alone, for the page's polling: 304 while it is unchanged."""
        texts = self._texts(request)
        context = self._list_context(request, texts)
        nonce, _new = self._nonce(request)
        body = (
            self.templates.get_template("_rows.html")
            .render(
                _=texts.gettext,
                ngettext=texts.ngettext,
                texts=texts,
                csrf=csrf_token(self.settings.keys, nonce),
                url=lambda name, **params: _url(request, name, params),
                can_act=self._can_act(),
                here=_here(request, "list"),
                **context,
            )
            .encode("utf-8")
        )
        tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"etag": tag, "cache-control": "no-cache", "content-language": texts.language}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    def source_page(self, request: Request) -> Response:
        texts = self._texts(request)
        key = request.query_params.get("key", "")
        if not key.strip() or not self._known(key):
            return self._refuse(request, texts, texts.gettext("No such source."), 404)
        store = self.settings.store
        state = store.load(key)
        history = store.history(key, _HISTORY_SHOWN)
        summary = store.history_summaries([key], SUMMARY_CYCLES).get(key)
        status = status_of(state, now=texts.now, policy=self.settings.policy(key))
        actions = store.actions(key, _HISTORY_SHOWN)
        return self._render(
            request,
            "source.html",
            texts,
            state=state,
            status=status,
            row=row_view(texts, state, status, summary),
            element=element_id(key),
            reason=reason_sentences(texts, state, status),
            summary=history_sentence(texts, summary),
            history=history_lines(texts, history, actions),
            chart=chart_bars(history[:_CHART_CYCLES]),
            set_aside=[set_aside_view(texts, record) for record in store.list_rejected(key)],
            time_view=lambda when: time_view(texts, when),
            action_names=ACTION_NAMES,
        )

    # -- changing ------------------------------------------------------------------------------

    def confirm_page(self, request: Request) -> Response:
        texts = self._texts(request)
        key = request.query_params.get("key", "")
        action = _action(request.query_params.get("action"))
        if action is None or not key.strip() or not self._known(key):
            return self._refuse(request, texts, texts.gettext("No such source or action."), 404)
        if self._actor(request, action, key) is None:
            return self._refuse(request, texts, self._not_allowed(texts), 403)
        return self._render(
            request,
            "confirm.html",
            texts,
            key=key,
            action=action,
            action_name=ACTION_NAMES[action],
            consequence=ACTION_CONSEQUENCES[action],
            next_url=_safe_next(request.query_params.get("next")),
        )

    def _not_allowed(self, texts: Texts) -> str:
        if self.settings.sign_in:
            return texts.gettext("Sign in to change sources.")
        if self.settings.authorize is None:
            return texts.gettext("This console is read-only.")
        return texts.gettext("You are not allowed to do this.")

    async def _form(self, request: Request) -> dict[str, str] | None:
        """The urlencoded form of a POST, ``None`` when it is too large or not a form."""
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _BODY_LIMIT:
                return None
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            return None
        return {name: values[-1] for name, values in parsed.items()}

    def _gate(self, request: Request, form: Mapping[str, str] | None) -> str | None:
        """Return why a changing request is refused (origin, then CSRF), ``None`` if it passes."""
        own = f"{request.url.scheme}://{request.url.netloc}"
        if not same_origin(
            request.headers.get("origin"),
            request.headers.get("referer"),
            own,
            self.settings.allowed_origins,
        ):
            return "origin"
        if form is None or not valid_csrf(
            self.settings.keys, request.cookies.get(_CSRF_COOKIE), form.get("csrf")
        ):
            return "csrf"
        return None

    async def act(self, request: Request) -> Response:
        texts = self._texts(request)
        form = await self._form(request)
        refused = self._gate(request, form)
        if refused is not None or form is None:
            logger.warning("console: a change was refused (%s check failed)", refused)
            return self._refuse(request, texts, _gate_message(texts, refused), 403)
        key, action = form.get("key", ""), _action(form.get("action"))
        if action is None or not key.strip():
            return self._refuse(request, texts, texts.gettext("No such source or action."), 400)
        actor = await run_in_threadpool(self._actor, request, action, key)
        if actor is None:
            logger.warning("console: %s of %r refused: not authorized", action.value, key)
            return self._refuse(request, texts, self._not_allowed(texts), 403)
        if not await run_in_threadpool(self._known, key):
            return self._refuse(request, texts, texts.gettext("No such source."), 404)
        entry = ActionEntry(source_key=key, action=action, actor=actor, at=texts.now)
        await run_in_threadpool(self.settings.store.act, entry)
        logger.info("console: %s of %r by %s", action.value, key, actor)
        target = _safe_next(form.get("next")) or _url(request, "source", {"key": key})
        return RedirectResponse(target, status_code=303)

    # -- the viewer's settings and sign-in -------------------------------------------------------

    def language(self, request: Request) -> Response:
        chosen = request.query_params.get("lang", "")
        response = RedirectResponse(
            _safe_next(request.query_params.get("next")) or _url(request, "list", {}),
            status_code=303,
        )
        if chosen in LANGUAGES:
            self._set_cookie(
                request, response, _LANGUAGE_COOKIE, chosen, http_only=True, max_age=31_536_000
            )
        return response

    def sign_in_page(self, request: Request) -> Response:
        texts = self._texts(request)
        if not self.settings.sign_in:
            return self._refuse(request, texts, texts.gettext("There is no sign-in here."), 404)
        return self._render(
            request,
            "sign_in.html",
            texts,
            next_url=_safe_next(request.query_params.get("next")),
            problem=None,
        )

    async def sign_in(self, request: Request) -> Response:
        texts = self._texts(request)
        if not self.settings.sign_in:
            return self._refuse(request, texts, texts.gettext("There is no sign-in here."), 404)
        form = await self._form(request)
        refused = self._gate(request, form)
        if refused is not None or form is None:
            return self._refuse(request, texts, _gate_message(texts, refused), 403)
        given = form.get("secret", "").encode("utf-8")
        name = form.get("name", "").strip()
        problem = None
        if not self.settings.keys.matches(given):
            problem = texts.gettext("That is not the console's secret.")
        else:
            try:
                check_actor(name)
            except ConfigurationError:
                problem = texts.gettext("Give your name (printable text, at most 200 characters).")
        if problem is not None:
            logger.warning("console: a sign-in was refused")
            return self._render(
                request,
                "sign_in.html",
                texts,
                403,
                next_url=_safe_next(form.get("next")),
                problem=problem,
            )
        signed = SignedName.lasting(name, texts.now, self.settings.sign_in_duration)
        response = RedirectResponse(
            _safe_next(form.get("next")) or _url(request, "list", {}), status_code=303
        )
        self._set_cookie(
            request,
            response,
            _SIGN_IN_COOKIE,
            signed.cookie(self.settings.keys),
            http_only=True,
            max_age=int(self.settings.sign_in_duration.total_seconds()),
        )
        logger.info("console: %s signed in", name)
        return response

    async def sign_out(self, request: Request) -> Response:
        texts = self._texts(request)
        refused = self._gate(request, await self._form(request))
        if refused is not None:
            return self._refuse(request, texts, _gate_message(texts, refused), 403)
        response = RedirectResponse(_url(request, "list", {}), status_code=303)
        response.delete_cookie(_SIGN_IN_COOKIE, path=request.scope.get("root_path") or "/")
        return response


def _gate_message(texts: Texts, refused: str | None) -> str:
    if refused == "origin":
        return texts.gettext("This request did not come from the console's own page.")
    return texts.gettext("This form has expired: reload the page and try again.")


def _action(value: str | None) -> Action | None:
    try:
        return None if value is None else Action(value)
    except ValueError:
        return None


def _url(request: Request, name: str, params: Mapping[str, str]) -> str:
    path = request.url_for(name).path
    return f"{path}?{urlencode(params)}" if params else path


def _here(request: Request, name: str | None = None) -> str:
    """The page's own address (path and query), for a form to come back to."""
    if name is not None:
        return _url(request, name, dict(request.query_params))
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _safe_next(value: str | None) -> str | None:
    """Return a path on this site to go to, ``None`` for anything else (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if any(ord(character) < 0x20 for character in value):
        return None
    return value


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
        policy: The status thresholds, or a function giving each source's by key.
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
    settings = _Settings(
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
    console = _Console(settings)
    routes = [
        Route("/", console.list_page, name="list"),
        Route("/rows", console.rows, name="rows"),
        Route("/palette.css", console.palette, name="palette"),
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
