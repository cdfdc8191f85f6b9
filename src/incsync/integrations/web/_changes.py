"""The console's requests that change something: a confirmation, then the change; signing in.

A change goes through four gates, in this order, each refusing with 403 and changing nothing: the
request comes from the console's own origin, carries the CSRF token of its cookie, the host's
authorization names who asks, and the source is one the console lists. Then the store makes the
change and keeps who made it in the same transaction
(:meth:`~incsync.protocols.StateStore.act`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from incsync.actions import ActionEntry, check_actor
from incsync.errors import ConfigurationError
from incsync.integrations.web._i18n import Texts
from incsync.integrations.web._pages import (
    BODY_LIMIT,
    CSRF_COOKIE,
    SIGN_IN_COOKIE,
    Pages,
    Settings,
    action_named,
    logger,
    safe_next,
    url,
)
from incsync.integrations.web._security import (
    SignedName,
    same_origin,
    valid_csrf,
)
from incsync.integrations.web._throttle import SignInThrottle
from incsync.integrations.web._words import (
    ACTION_CONSEQUENCES,
    ACTION_NAMES,
)

__all__ = ["Console"]


def _gate_message(texts: Texts, refused: str | None) -> str:
    if refused == "origin":
        return texts.gettext("This request did not come from the console's own page.")
    return texts.gettext("This form has expired: reload the page and try again.")


class Console(Pages):
    """Every handler: the pages that read, and the requests that change."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.throttle = SignInThrottle()

    def confirm_page(self, request: Request) -> Response:
        texts = self._texts(request)
        key = request.query_params.get("key", "")
        action = action_named(request.query_params.get("action"))
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
            next_url=safe_next(request.query_params.get("next")),
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
            if len(body) > BODY_LIMIT:
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
            self.settings.keys, request.cookies.get(CSRF_COOKIE), form.get("csrf")
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
        key, action = form.get("key", ""), action_named(form.get("action"))
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
        target = safe_next(form.get("next")) or url(request, "source", {"key": key})
        return RedirectResponse(target, status_code=303)

    # -- the viewer's settings and sign-in -------------------------------------------------------

    def sign_in_page(self, request: Request) -> Response:
        texts = self._texts(request)
        if not self.settings.sign_in:
            return self._refuse(request, texts, texts.gettext("There is no sign-in here."), 404)
        return self._render(
            request,
            "sign_in.html",
            texts,
            next_url=safe_next(request.query_params.get("next")),
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
        # After the gate, so a page on another site cannot spend a person's tries.
        address = request.client.host if request.client is not None else ""
        delay = self.throttle.take(address, texts.now)
        if delay is not None:
            seconds = math.ceil(delay.total_seconds())
            logger.warning("console: a sign-in was refused: too many tries (wait %d s)", seconds)
            refusal = self._render(
                request,
                "sign_in.html",
                texts,
                429,
                next_url=safe_next(form.get("next")),
                problem=texts.ngettext(
                    "Too many tries: wait %(num)s second, then try again.",
                    "Too many tries: wait %(num)s seconds, then try again.",
                    seconds,
                ),
            )
            refusal.headers["retry-after"] = str(seconds)
            return refusal
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
                next_url=safe_next(form.get("next")),
                problem=problem,
            )
        signed = SignedName.lasting(name, texts.now, self.settings.sign_in_duration)
        response = RedirectResponse(
            safe_next(form.get("next")) or url(request, "list", {}), status_code=303
        )
        self._set_cookie(
            request,
            response,
            SIGN_IN_COOKIE,
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
        response = RedirectResponse(url(request, "list", {}), status_code=303)
        response.delete_cookie(SIGN_IN_COOKIE, path=request.scope.get("root_path") or "/")
        return response
