"""Salesforce's OAuth2: a refresh that learns the org's ``instance_url`` and calls the API there.

Split from :mod:`incsync.vendors.salesforce`, whose connector builds one
:class:`SalesforceOAuth` per connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import httpx

from incsync.connectors.auth import Auth, AuthFlow, OAuthVendor, TokenSet
from incsync.errors import BadResponseError
from incsync.protocols import TokenKeeper
from incsync.tokens import StoredTokens

__all__ = ["SalesforceOAuth", "checked_instance_url"]

_OAUTH = OAuthVendor("https://login.salesforce.com/services/oauth2/token", client_auth="body")
# The token endpoint lives at the login host, which sandboxes and My Domains change.
_TOKEN_PATH = httpx.URL(_OAUTH.token_url).path


class _RefreshTokenOnly:
    """A keeper whose saved access tokens are never reused, only its refresh token.

    An access token is usable only at the instance URL its token answer named, which is not kept:
    every process starts with a refresh, and learns the URL from its answer.
    """

    def __init__(self, keeper: TokenKeeper) -> None:
        self._keeper = keeper

    def load(self) -> StoredTokens | None:
        kept = self._keeper.load()
        return None if kept is None else StoredTokens(kept.refresh_token)

    def check(self) -> None:
        self._keeper.check()

    def save(self, tokens: StoredTokens) -> None:
        self._keeper.save(tokens)


class SalesforceOAuth(Auth):
    """OAuth2 refresh that learns ``instance_url`` from the token answer and calls the API there.

    It wraps the refresh flow every vendor uses, rather than extending it, so that flow is built
    in one place (:meth:`OAuthVendor.refresh <incsync.connectors.auth.OAuthVendor.refresh>`).
    """

    def __init__(
        self,
        login_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        instance_url: str | None,
        access_token: str | None,
        on_refresh: Callable[[TokenSet], None] | None,
        keeper: TokenKeeper | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.instance_url = instance_url
        self._host_on_refresh = on_refresh
        self._tokens = _OAUTH.refresh(
            client_id,
            client_secret,
            refresh_token,
            token_url=login_url.rstrip("/") + _TOKEN_PATH,
            access_token=access_token,
            on_refresh=self._learn_instance,
            keeper=None if keeper is None else _RefreshTokenOnly(keeper),
            clock=clock,
        )

    def secrets(self) -> Sequence[str]:
        """Return the secrets of the refresh flow."""
        return self._tokens.secrets()

    def __repr__(self) -> str:
        return repr(self._tokens)

    def _learn_instance(self, tokens: TokenSet) -> None:
        url = tokens.extra.get("instance_url")
        if url is not None:
            self.instance_url = checked_instance_url(url)
        if self._host_on_refresh is not None:
            self._host_on_refresh(tokens)

    def auth_flow(self, request: httpx.Request) -> AuthFlow:
        """Sign ``request`` as OAuth2Refresh does, sending it to the org's ``instance_url``."""
        flow = self._tokens.auth_flow(request)
        try:
            outgoing = next(flow)
            while True:
                if outgoing is request and self.instance_url is not None:
                    _rebase(outgoing, httpx.URL(self.instance_url))
                response = yield outgoing
                outgoing = flow.send(response)
        except StopIteration:
            return
        finally:
            # The refresh flow holds its refresh lock across a yield: close it on every path.
            flow.close()


def checked_instance_url(url: object) -> str:
    parsed = httpx.URL(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadResponseError(
            f"salesforce: the token answer's instance_url {url!r} is not an http(s) URL; check "
            f"login_url",
            vendor="salesforce",
        )
    return str(parsed.copy_with(path="/", query=None, fragment=None)).rstrip("/")


def _rebase(request: httpx.Request, origin: httpx.URL) -> None:
    if (request.url.scheme, request.url.host, request.url.port) == (
        origin.scheme,
        origin.host,
        origin.port,
    ):
        return
    request.url = request.url.copy_with(scheme=origin.scheme, host=origin.host, port=origin.port)
    request.headers["Host"] = request.url.netloc.decode("ascii")
