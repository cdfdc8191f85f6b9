"""The console's pages that read: the list, its live rows, a source's page, and what they share.

Reads go straight to the store, in Starlette's thread pool (the handlers are plain functions), so
a slow store never blocks the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import attrs
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from incsync.actions import Action, check_actor
from incsync.errors import ConfigurationError
from incsync.history import SUMMARY_CYCLES
from incsync.humanize import resolve_zone
from incsync.integrations.web._classified import Classified, classify
from incsync.integrations.web._i18n import LANGUAGES, Texts, negotiate_language
from incsync.integrations.web._listing import SEVERITY, ListQuery, Row, select_page
from incsync.integrations.web._security import (
    ConsoleKeys,
    SignedName,
    csrf_token,
    new_nonce,
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
    ACTION_NAMES,
    COLOR_NAMES,
    COLUMN_NAMES,
    SORT_NAMES,
)
from incsync.protocols import Clock, StateStore
from incsync.state import SourceState, new_state
from incsync.status import StatusPolicy, status_of
from incsync.views import PALETTE, terminal_safe

__all__ = [
    "BODY_LIMIT",
    "CSRF_COOKIE",
    "SIGN_IN_COOKIE",
    "Authorizer",
    "Pages",
    "Settings",
    "action_named",
    "here",
    "logger",
    "safe_next",
    "url",
]

logger = logging.getLogger("incsync.console")

Authorizer = Callable[[Request, Action, str], "str | None"]
"""The host's authorization: given the request, the action and the source's key, return the name
of who asks (kept in the action log) to allow it, or ``None`` to refuse it."""

CSRF_COOKIE = "incsync_csrf"
_ZONE_COOKIE = "incsync_zone"
_LANGUAGE_COOKIE = "incsync_lang"
SIGN_IN_COOKIE = "incsync_signed_in"
BODY_LIMIT = 16 * 1024
_HISTORY_SHOWN = 50
# The circles' colours are the one palette's (incsync.views), as CSS variables before the rest:
# one stylesheet, so the first paint waits for one request.
_STYLESHEET = (
    ":root{"
    + "".join(f"--dot-{color.value}:{hex_color};" for color, hex_color in PALETTE.items())
    + "}\n"
    + files(__package__).joinpath("static/console.css").read_text(encoding="utf-8")
)
_CHART_CYCLES = 30


@attrs.frozen
class Settings:
    """What :func:`~incsync.integrations.web.create_app` was given, checked."""

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


# One environment for every console of the process: the templates are the same, and each is
# compiled once, on first use, not once per console made.
@functools.cache
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


class Pages:
    """The handlers that read, over one set of settings, and what every handler shares."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.templates = _environment()
        # The list's statuses by key, as the last request classified them (see _classified).
        # Replaced whole, never changed in place, so handlers in other threads read either.
        self._classified: Mapping[str, Classified] = {}

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
        nonce = request.cookies.get(CSRF_COOKIE)
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
            self.settings.keys, request.cookies.get(SIGN_IN_COOKIE), self.settings.clock()
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
            url=lambda name, **params: url(request, name, params),
            static_url=lambda path: request.url_for("static", path=path).path,
            stylesheet_url=request.url_for("stylesheet").path,
            can_act=self._can_act(),
            sign_in=self.settings.sign_in,
            signed_in=self._signed_in(request),
            here=here(request),
            languages=LANGUAGES,
            **context,
        )
        response = HTMLResponse(page, status_code=status_code)
        response.headers["cache-control"] = "no-store"
        response.headers["content-language"] = texts.language
        if new:
            self._set_cookie(request, response, CSRF_COOKIE, nonce, http_only=True)
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

    def _statuses(self, states: Sequence[SourceState], now: datetime) -> list[Classified]:
        """Every source with its status at ``now``; only what changed since is classified."""
        classified = classify(states, self._classified, now, self.settings.policy)
        self._classified = {entry.state.key: entry for entry in classified}
        return classified

    def _known(self, key: str) -> bool:
        return key in self.settings.sources or self.settings.store.load(key) != new_state(key)

    def _list_context(
        self, request: Request, texts: Texts, rows: Sequence[Row] | None = None
    ) -> dict[str, Any]:
        settings = self.settings
        query = ListQuery.from_params(request.query_params)
        if rows is None:
            rows = [
                (entry.state, entry.status) for entry in self._statuses(self._states(), texts.now)
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
            "list_url": lambda **changes: url(request, "list", query.params(**changes)),
            "columns": [
                (name, query.aria_sort(sort), url(request, "list", query.sorted_by(sort).params()))
                for sort, name in COLUMN_NAMES.items()
            ],
        }

    def list_page(self, request: Request) -> Response:
        texts = self._texts(request)
        context = self._list_context(request, texts)
        return self._render(
            request,
            "list.html",
            texts,
            rows_url=url(request, "rows", context["query"].params()),
            poll_ms=int(self.settings.poll_interval.total_seconds() * 1000),
            **context,
        )

    def stylesheet(self, _request: Request) -> Response:
        """The console's one stylesheet: the circles' colours, then ``static/console.css``."""
        return Response(
            _STYLESHEET, media_type="text/css", headers={"cache-control": "public, max-age=3600"}
        )

    def rows(self, request: Request) -> Response:
        """The list's changing part alone, for the page's polling: 304 while it is unchanged.

        The tag is decided before anything is drawn, from the states and their statuses (only
        what changed is classified again), so an unchanged list costs a read of the states, not
        a page.
        """
        texts = self._texts(request)
        classified = self._statuses(self._states(), texts.now)
        tag = self._rows_tag(request, texts, classified)
        headers = {"etag": tag, "cache-control": "no-cache", "content-language": texts.language}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        rows = [(entry.state, entry.status) for entry in classified]
        context = self._list_context(request, texts, rows)
        nonce, _new = self._nonce(request)
        body = self.templates.get_template("_rows.html").render(
            _=texts.gettext,
            ngettext=texts.ngettext,
            texts=texts,
            csrf=csrf_token(self.settings.keys, nonce),
            url=lambda name, **params: url(request, name, params),
            can_act=self._can_act(),
            here=here(request, "list"),
            **context,
        )
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    def _rows_tag(self, request: Request, texts: Texts, classified: Sequence[Classified]) -> str:
        """The rows' entity tag: what they are drawn from, and the minute.

        A cycle's end or an action changes a state, and time alone changes a status (a source
        falling overdue) as it crosses a threshold, so the rows show either at the next poll.
        Times are words to the minute, so the minute is part of the tag too.
        """
        digest = hashlib.sha256()
        minute = texts.now.replace(second=0, microsecond=0).isoformat()
        viewer = (request.url.query, texts.language, str(texts.zone), minute, self._can_act())
        for part in (*viewer, self._signed_in(request)):
            digest.update(repr(part).encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
        # Each source's state and reason, digested when it was classified.
        digest.update(b"".join(entry.digest for entry in classified))
        return '"' + digest.hexdigest()[:32] + '"'

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

    def language(self, request: Request) -> Response:
        chosen = request.query_params.get("lang", "")
        response = RedirectResponse(
            safe_next(request.query_params.get("next")) or url(request, "list", {}),
            status_code=303,
        )
        if chosen in LANGUAGES:
            self._set_cookie(
                request, response, _LANGUAGE_COOKIE, chosen, http_only=True, max_age=31_536_000
            )
        return response


def action_named(value: str | None) -> Action | None:
    try:
        return None if value is None else Action(value)
    except ValueError:
        return None


def url(request: Request, name: str, params: Mapping[str, str]) -> str:
    path = request.url_for(name).path
    return f"{path}?{urlencode(params)}" if params else path


def here(request: Request, name: str | None = None) -> str:
    """The page's own address (path and query), for a form to come back to."""
    if name is not None:
        return url(request, name, dict(request.query_params))
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def safe_next(value: str | None) -> str | None:
    """Return a path on this site to go to, ``None`` for anything else (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if any(ord(character) < 0x20 for character in value):
        return None
    return value
