"""Credentials as pluggable httpx auth flows: a static key or token, or OAuth2 with refresh.

Each flow is an :class:`httpx.Auth`, so the connector's one client drives it and the token
endpoint is reached through the same client, transport and timeouts as the API itself. Each also
names its secrets, so every error message can be masked with them.

:class:`OAuth2Refresh` refreshes an expired (or expiring) access token before a request, and on a
401 refreshes once and replays the request. Refreshes are serialised, so concurrent requests that
all meet an expired token cause one refresh, not several racing with one refresh token (a vendor
that rotates refresh tokens would reject all but the first). When the vendor rotated the refresh
token the old one stops working, so the new one must be kept. A
:class:`~incsync.protocols.TokenKeeper` keeps it: the flow reads it before every refresh (another
process may have refreshed since), asks it whether a save can succeed *before* sending the refresh,
and saves the answer to it before the new access token is used. The host's ``on_refresh`` callback
then receives the new :class:`TokenSet`.

Vendors differ only in where their token endpoint is and how the app identifies itself there:
each built-in connector's module holds that as an :class:`OAuthVendor`, whose
:meth:`~OAuthVendor.refresh` builds the flow.
"""

from __future__ import annotations

import base64
import collections
import json
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import attrs
import httpx

from incsync.connectors._body import body_excerpt, refuse_declared_oversize
from incsync.errors import AuthError, BadResponseError, ConfigurationError, TransientSourceError
from incsync.protocols import TokenKeeper
from incsync.timestamps import ensure_utc, utc_now
from incsync.tokens import StoredTokens

__all__ = ["ApiKey", "Auth", "BearerToken", "OAuth2Refresh", "OAuthVendor", "TokenSet"]

_TOKEN_RESPONSE_LIMIT = 1024 * 1024
# Earlier tokens are kept as secrets for a while: a vendor may echo one in a later error body.
_REMEMBERED_TOKENS = 4

AuthFlow = Generator[httpx.Request, httpx.Response, None]


class Auth(httpx.Auth):
    """Base of incsync's credential flows: an httpx auth flow that also names its secrets.

    Subclass it for a scheme not covered here: implement :meth:`httpx.Auth.auth_flow` and
    :meth:`secrets`.
    """

    def secrets(self) -> Sequence[str]:
        """Return every credential value this flow holds, to be masked in messages."""
        return ()


def _required_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string")
    return value


class BearerToken(Auth):
    """A static bearer token (a private-app token, a secret key) sent as ``Authorization``.

    Args:
        token: The token.
    """

    def __init__(self, token: str) -> None:
        self._token = _required_text("token", token)

    def auth_flow(self, request: httpx.Request) -> AuthFlow:
        """Send the token with the request."""
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def secrets(self) -> Sequence[str]:
        """Return the token."""
        return (self._token,)

    def __repr__(self) -> str:
        return "BearerToken(***)"


class ApiKey(Auth):
    """A static API key sent in a header or as a query parameter (give exactly one).

    Args:
        key: The key.
        header: The header that carries it (``"X-API-Key"``).
        query_param: The query parameter that carries it (Pipedrive's ``"api_token"``).

    Raises:
        ConfigurationError: The key is empty, or not exactly one of header and query_param given.
    """

    def __init__(
        self, key: str, *, header: str | None = None, query_param: str | None = None
    ) -> None:
        self._key = _required_text("key", key)
        if header is not None and query_param is None:
            self._name, self._in_query = header, False
        elif query_param is not None and header is None:
            self._name, self._in_query = query_param, True
        else:
            raise ConfigurationError("ApiKey needs exactly one of header= or query_param=")

    def auth_flow(self, request: httpx.Request) -> AuthFlow:
        """Send the key with the request."""
        if self._in_query:
            request.url = request.url.copy_merge_params({self._name: self._key})
        else:
            request.headers[self._name] = self._key
        yield request

    def secrets(self) -> Sequence[str]:
        """Return the key."""
        return (self._key,)

    def __repr__(self) -> str:
        return f"ApiKey(***, {'query_param' if self._in_query else 'header'}={self._name!r})"


@attrs.frozen
class TokenSet:
    """The tokens one OAuth2 refresh produced, as handed to the host's ``on_refresh`` callback.

    Args:
        access_token: The new access token.
        refresh_token: The refresh token to use next time: the vendor's new one when it rotated
            it, the previous one otherwise. Store this value.
        rotated: Whether the vendor issued a new refresh token (the old one may stop working).
        expires_at: When the access token expires (aware UTC), when the vendor said.
        extra: The token response's other fields (Salesforce's ``instance_url``, QuickBooks'
            ``x_refresh_token_expires_in``…).
    """

    access_token: str = attrs.field(repr=False)
    refresh_token: str = attrs.field(repr=False)
    rotated: bool = False
    expires_at: datetime | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


class OAuth2Refresh(Auth):
    """OAuth2 bearer tokens renewed with a refresh token (the ``refresh_token`` grant).

    Args:
        token_url: The vendor's token endpoint.
        client_id: The app's client id.
        client_secret: The app's client secret.
        refresh_token: The refresh token the host stored.
        access_token: A still-valid access token, when the host has one; without it the first
            request refreshes first.
        expires_at: When ``access_token`` expires (aware), when known.
        on_refresh: Called with the new :class:`TokenSet` after every refresh (after
            ``keeper`` saved it), while other requests wait. An exception it raises reaches the
            caller unchanged (the new tokens are used in this process all the same).
        keeper: Where the tokens are kept between processes (see the module docstring): the
            tokens it holds replace ``refresh_token`` and ``access_token`` at the first request,
            a refresh is sent only once its :meth:`~incsync.protocols.TokenKeeper.check` passed,
            and the answer is saved to it before its access token is used. A save that fails
            fails the request; the new tokens are then saved again before the next one.
        client_auth: How the app identifies itself: ``"body"`` (client id and secret as form
            fields, Salesforce and most others) or ``"basic"`` (HTTP Basic, QuickBooks).
        scope: A ``scope`` to ask for, when the vendor requires one on refresh.
        refresh_margin: How long before ``expires_at`` a token counts as expired, so a request
            never leaves with a token that dies on the way.
        clock: Returns the current time (aware); injectable for tests.

    Raises:
        ConfigurationError: A required value is empty, or ``expires_at`` is naive.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        access_token: str | None = None,
        expires_at: datetime | None = None,
        on_refresh: Callable[[TokenSet], None] | None = None,
        keeper: TokenKeeper | None = None,
        client_auth: Literal["body", "basic"] = "body",
        scope: str | None = None,
        refresh_margin: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._token_url = _required_text("token_url", token_url)
        self._client_id = _required_text("client_id", client_id)
        self._client_secret = _required_text("client_secret", client_secret)
        self._refresh_token = _required_text("refresh_token", refresh_token)
        self._access_token = access_token or None
        self._expires_at = None if expires_at is None else ensure_utc(expires_at, "expires_at")
        if client_auth not in ("body", "basic"):
            raise ConfigurationError(f"client_auth must be 'body' or 'basic', not {client_auth!r}")
        self._client_auth = client_auth
        self._on_refresh = on_refresh
        self._keeper = keeper
        self._kept_read = keeper is None  # whether the keeper's tokens were read once
        self._unsaved: StoredTokens | None = None  # a refresh's answer the keeper refused
        self._scope = scope
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._previous: collections.deque[str] = collections.deque(maxlen=_REMEMBERED_TOKENS)
        # Reentrant, so that on_refresh may call secrets() or read the tokens while it runs.
        self._lock = threading.RLock()

    def auth_flow(self, request: httpx.Request) -> AuthFlow:
        """Sign ``request``; refresh first when the token expired, and once more on a 401."""
        with self._lock:
            self._settle_keeper(reread=False)
            token = None if self._expiring() else self._access_token
        if token is None:
            token = yield from self._refresh(None, request)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # The vendor may revoke a token before its stated expiry: refresh once and replay. A
        # second 401 reaches the connector, which reports the credentials as rejected.
        token = yield from self._refresh(token, request)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def secrets(self) -> Sequence[str]:
        """Return the client secret and the current and recent tokens."""
        current = (self._client_secret, self._refresh_token, self._access_token or "")
        return tuple(secret for secret in (*current, *self._previous) if secret)

    def __repr__(self) -> str:
        return f"OAuth2Refresh(token_url={self._token_url!r}, client_id={self._client_id!r})"

    def _expiring(self) -> bool:
        if self._access_token is None:
            return True
        if self._expires_at is None:
            return False
        return self._clock() >= self._expires_at - self._refresh_margin

    def _settle_keeper(self, *, reread: bool) -> None:
        """Save a refresh's answer the keeper refused before; then take the keeper's tokens.

        The keeper is read at the first request, and before every refresh (``reread``).

        Raises:
            SourceError: The keeper still cannot save (the new access token stays unused), or
                cannot be read.
        """
        if self._keeper is None:
            return
        if self._unsaved is not None:
            self._keeper.save(self._unsaved)
            self._unsaved = None
        if reread or not self._kept_read:
            self._adopt(self._keeper.load())
            self._kept_read = True

    def _adopt(self, kept: StoredTokens | None) -> bool:
        """Take the keeper's tokens when they differ from this flow's; return whether they did.

        The keeper's are the newest: another process (or an earlier run) refreshed and saved them.
        """
        if kept is None or (kept.refresh_token, kept.access_token) == (
            self._refresh_token,
            self._access_token,
        ):
            return False
        self._remember(self._refresh_token, self._access_token)
        self._refresh_token = kept.refresh_token
        if kept.access_token is not None:
            self._access_token, self._expires_at = kept.access_token, kept.expires_at
        return True

    def _remember(self, *tokens: str | None) -> None:
        for old in tokens:
            if old and old not in self._previous:
                self._previous.append(old)

    def _refresh(
        self, stale: str | None, like: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, str]:
        # Held while the token request is out: the generator runs on the calling thread until
        # httpx closes it, which releases the lock on every path.
        with self._lock:
            self._settle_keeper(reread=True)
            if (token := self._usable(stale)) is not None:
                return token  # refreshed meanwhile, in this process or another
            if self._keeper is not None:
                # Never ask for tokens that could not be kept: a rotating vendor would then hold
                # the only valid refresh token.
                self._keeper.check()
            presented = self._refresh_token
            response = yield self._token_request(like)
            refused: AuthError | None = None
            try:
                tokens = self._read_tokens(response)
            except AuthError as error:
                refused = error
            if refused is None:
                return self._keep(tokens)
            # Refused: another process may have rotated the token since it was read above.
            if self._keeper is None or not self._adopt(self._keeper.load()):
                raise refused
            if (token := self._usable(stale)) is not None:
                return token
            if self._refresh_token == presented:
                raise refused
            self._keeper.check()
            return self._keep(self._read_tokens((yield self._token_request(like))))

    def _usable(self, stale: str | None) -> str | None:
        """Return the access token when it is neither ``stale`` nor expiring."""
        token = self._access_token
        return token if token is not None and token != stale and not self._expiring() else None

    def _keep(self, tokens: TokenSet) -> str:
        """Take a refresh's answer: saved by the keeper first, then in use, then told the host.

        Returns:
            The new access token.
        """
        self._remember(self._access_token, self._refresh_token if tokens.rotated else None)
        self._access_token = tokens.access_token
        self._refresh_token = tokens.refresh_token
        self._expires_at = tokens.expires_at
        if self._keeper is not None:
            # Held in memory first: the vendor may already refuse the previous refresh token, so
            # a save that fails is tried again before the next request rather than lost.
            self._unsaved = StoredTokens(
                tokens.refresh_token,
                tokens.access_token if tokens.expires_at is not None else None,
                tokens.expires_at,
            )
            self._keeper.save(self._unsaved)
            self._unsaved = None
        if self._on_refresh is not None:
            self._on_refresh(tokens)
        return tokens.access_token

    def _token_request(self, like: httpx.Request) -> httpx.Request:
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        if self._scope:
            form["scope"] = self._scope
        headers = {"Accept": "application/json"}
        if self._client_auth == "basic":
            pair = f"{self._client_id}:{self._client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form.update(client_id=self._client_id, client_secret=self._client_secret)
        # The same timeouts as the request being signed: no request leaves without one.
        extensions = {key: like.extensions[key] for key in ("timeout",) if key in like.extensions}
        return httpx.Request(
            "POST", self._token_url, data=form, headers=headers, extensions=extensions
        )

    def _read_tokens(self, response: httpx.Response) -> TokenSet:
        body = _read_token_body(response, self.secrets())
        status = response.status_code
        excerpt = body_excerpt(body, self.secrets())
        if status == 429 or status >= 500:
            raise TransientSourceError(
                f"the OAuth2 token endpoint failed (HTTP {status}); the refresh is tried again",
                status_code=status,
                excerpt=excerpt,
            )
        payload = _json_object(body)
        if not 200 <= status < 300:
            raise _refused(status, payload, excerpt)
        if payload is None:
            # RFC 6749 answers a grant with a JSON object. A 200 whose body is cut, empty or not a
            # JSON object is what proxies, gateways and maintenance pages send while the vendor
            # is unreachable: the refresh token was never judged, so this is a bad response that
            # the next cycle retries, never a rejected credential that stops the source.
            raise BadResponseError(
                "the OAuth2 token endpoint answered 200 with a body that is not a JSON object "
                "(cut off, or a page from a proxy in between); the next cycle tries again",
                status_code=status,
                excerpt=excerpt,
            )
        access_token = payload.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            # A whole JSON object without a token is an answer, not damage: some endpoints
            # refuse with a 200 and an "error" field (GitHub, Slack), and one that sends neither
            # is not a token endpoint (a wrong token_url). Asking again cannot change either.
            if isinstance(payload.get("error"), str):
                raise _refused(status, payload, excerpt)
            raise AuthError(
                "the OAuth2 token endpoint answered without an access_token; check token_url",
                status_code=status,
                excerpt=excerpt,
            )
        new_refresh = payload.get("refresh_token")
        refresh_token = new_refresh if isinstance(new_refresh, str) and new_refresh else None
        return TokenSet(
            access_token=access_token,
            refresh_token=refresh_token or self._refresh_token,
            rotated=refresh_token is not None and refresh_token != self._refresh_token,
            expires_at=self._expiry(payload.get("expires_in"), status, excerpt),
            extra={
                key: value
                for key, value in payload.items()
                if key not in ("access_token", "refresh_token", "expires_in")
            },
        )

    def _expiry(self, expires_in: object, status: int, excerpt: str) -> datetime | None:
        if expires_in is None:
            return None
        # Most vendors send a number; some send it as text.
        try:
            if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float, str)):
                raise TypeError  # noqa: TRY301 - one message for every unreadable value
            return self._clock() + timedelta(seconds=float(expires_in))
        except (TypeError, ValueError, OverflowError):
            raise BadResponseError(
                f"the OAuth2 token endpoint sent an unreadable expires_in: {expires_in!r}",
                status_code=status,
                excerpt=excerpt,
            ) from None


@attrs.frozen
class OAuthVendor:
    """What one vendor's OAuth2 refresh needs: its token endpoint and how the app identifies itself.

    Args:
        token_url: The vendor's token endpoint.
        client_auth: ``"basic"`` (client id and secret in HTTP Basic) or ``"body"`` (as form
            fields); see :class:`OAuth2Refresh`.
    """

    token_url: str
    client_auth: Literal["body", "basic"] = "body"

    def refresh(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        token_url: str | None = None,
        access_token: str | None = None,
        expires_at: datetime | None = None,
        on_refresh: Callable[[TokenSet], None] | None = None,
        keeper: TokenKeeper | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> OAuth2Refresh:
        """Return the refresh flow of one connection to this vendor.

        A vendor that rotates refresh tokens makes the old one stop working after a refresh: give
        a ``keeper`` (:class:`~incsync.tokens.StoreTokenKeeper` keeps them in the state store),
        which saves the new one before it is used.

        Args:
            client_id: The app's client id.
            client_secret: The app's client secret.
            refresh_token: The refresh token the host stored.
            token_url: Another token endpoint (a sandbox's, a test double's); the vendor's
                otherwise.
            access_token: A still-valid access token, when the host has one.
            expires_at: When ``access_token`` expires (aware).
            on_refresh: Called with the new tokens after every refresh.
            keeper: Keeps the tokens between processes (see :class:`OAuth2Refresh`).
            clock: Returns the current time (aware).

        Raises:
            ConfigurationError: A value is empty, or ``expires_at`` is naive.
        """
        return OAuth2Refresh(
            self.token_url if token_url is None else token_url,
            client_id,
            client_secret,
            refresh_token,
            access_token=access_token,
            expires_at=expires_at,
            on_refresh=on_refresh,
            keeper=keeper,
            client_auth=self.client_auth,
            clock=clock,
        )


def _refused(status: int, payload: Mapping[str, Any] | None, excerpt: str) -> AuthError:
    reason = payload.get("error") if payload else None
    return AuthError(
        f"the OAuth2 token refresh was refused (HTTP {status}"
        f"{f', {reason}' if isinstance(reason, str) else ''}); re-authorise the "
        f"connection to get a new refresh token",
        status_code=status,
        excerpt=excerpt,
    )


def _read_token_body(response: httpx.Response, secrets: Sequence[str]) -> bytes:
    # httpx reads this response again once the flow moves on, so it is read with read(), which
    # keeps the body, rather than streamed within the cap. A declared size over the cap is still
    # refused before reading; a real token answer is a few hundred bytes.
    refuse_declared_oversize(response, _TOKEN_RESPONSE_LIMIT, secrets)
    body = response.read()
    if len(body) > _TOKEN_RESPONSE_LIMIT:
        raise BadResponseError(
            f"the OAuth2 token answer is larger than {_TOKEN_RESPONSE_LIMIT:,} bytes",
            status_code=response.status_code,
        )
    return body


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None
