"""A small vendor API for the toolkit's tests: OAuth2 with expiring, rotating tokens, and pages.

It is deliberately strict in the ways real vendors are: a refresh token works once (rotation), an
access token dies when told to, a wrong client secret is refused, and error bodies echo what the
client sent (some vendors do), so tests can check that no secret reaches a message.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import httpx

from incsync.connectors import HttpConnector, offset_pages
from incsync.connectors.base import RawPage
from incsync.cursor import Window
from incsync.testing.fakes import FakeVendor

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "ItemsConnector", "OAuthApi", "item"]

CLIENT_ID = "client-123"
CLIENT_SECRET = "cs_SENTINEL_client_secret_5d1e"


class OAuthApi(FakeVendor):
    """An API under ``/api`` guarded by OAuth2 bearer tokens, with its token endpoint.

    Args:
        items: What ``GET /api/items`` pages through (``?offset=&limit=``).
        rotate: Whether each refresh issues a new refresh token (and retires the old one).
        expires_in: The lifetime the token endpoint announces, in seconds (``None`` omits it).
    """

    def __init__(
        self,
        items: Iterable[dict[str, Any]] = (),
        *,
        rotate: bool = True,
        expires_in: int | None = 3600,
    ) -> None:
        super().__init__()
        self.items = list(items)
        self.rotate = rotate
        self.expires_in = expires_in
        self._numbers = itertools.count(2)
        self.valid_access_tokens = {"at_SENTINEL_1"}
        self.refresh_token = "rt_SENTINEL_1"
        self.refreshes = 0
        self.refresh_answer: httpx.Response | None = None
        self.token_forms: list[dict[str, str]] = []
        self.token_headers: list[httpx.Headers] = []

    def expire_access_tokens(self) -> None:
        """Revoke every access token issued so far (the next API call gets a 401)."""
        with self._lock:
            self.valid_access_tokens.clear()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return self._token(request)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.valid_access_tokens:
            # Echoes the rejected credential, as some vendors' error bodies do.
            return httpx.Response(
                401, json={"error": "invalid_token", "message": f"token {token} is not valid"}
            )
        offset = int(request.url.params.get("offset", "0"))
        limit = int(request.url.params.get("limit", "100"))
        return httpx.Response(200, json={"items": self.items[offset : offset + limit]})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
        self.token_forms.append(form)
        self.token_headers.append(request.headers)
        if self.refresh_answer is not None:
            return self.refresh_answer
        basic = request.headers.get("authorization", "")
        if basic:
            client_id, _, secret = (
                base64.b64decode(basic.removeprefix("Basic ")).decode().partition(":")
            )
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
            return httpx.Response(401, json={"error": "invalid_client"})
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("refresh_token") != self.refresh_token
        ):
            return httpx.Response(
                400, json={"error": "invalid_grant", "error_description": "token invalid"}
            )
        number = next(self._numbers)
        self.refreshes += 1
        access_token = f"at_SENTINEL_{number}"
        self.valid_access_tokens.add(access_token)
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "bearer",
            "instance_url": "https://eu1.example.com",
        }
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if self.rotate:
            self.refresh_token = f"rt_SENTINEL_{number}"
            body["refresh_token"] = self.refresh_token
        return httpx.Response(200, json=body)


class ItemsConnector(HttpConnector):
    """Reads ``/api/items`` by offset, as a vendor connector built on the toolkit would."""

    vendor = "acme"
    page_size = 2

    def fetch(self, window: Window) -> Iterable[RawPage]:
        def page_at(offset: int) -> RawPage:
            page = self.get_json("/api/items", params={"offset": offset, "limit": self.page_size})
            items: RawPage = page["items"]
            return items

        return offset_pages(page_at, page_size=self.page_size)


def item(number: int, at: datetime) -> dict[str, Any]:
    """An item as the fake API serves it."""
    return {"id": f"i{number}", "updated_at": at.isoformat()}
