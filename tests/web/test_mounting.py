"""The console mounted in each host docs/console.md shows: Starlette, FastAPI, Django, Flask.

Each host is built by running the page's own examples: the first mounting example (the store,
the host's ``authorize`` and the console, mounted in Starlette), then the host's. A source of the
page then gets a real cycle, and a client speaks to the host as a browser would: the host's own
test client (Starlette's to the Starlette, FastAPI and Django ASGI applications, Flask's to the
Flask application, whose WSGI stack reaches the console through a2wsgi), and, for Django and
Flask, real HTTP over loopback to a real server: uvicorn serving the Django ASGI application,
waitress serving the Flask WSGI application. Under every host the list is served at the prefix,
every link, form and redirect stays under it, and a change needs the form's CSRF token and a user
the host's ``authorize`` accepts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from html import unescape
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import pytest
from django.http import HttpRequest, HttpResponse
from django.urls import path
from starlette.testclient import TestClient

from incsync.actions import Action
from incsync.connectors import InMemoryConnector, sample_source
from incsync.engine import SyncEngine
from incsync.state import Phase
from incsync.testing import InMemoryStore
from tests.helpers import django_settings
from tests.test_docs import ROOT, example_after, run_blocks
from tests.web.serving import served, served_wsgi

PAGE = ROOT / "docs" / "console.md"
PREFIX = "/import"  # where the page's examples mount the console
SYNCED = "hubspot-acme"  # one of the page's configured sources; the tests sync it once
NEVER_RUN = "quickbooks-acme"  # the page's other configured source
ANA = {"x-forwarded-user": "ana@example.com"}  # whom the page's ``authorize`` lets act
# Each host and the heading of its example on the page (Starlette's is the mounting example).
HOSTS = {
    "starlette": None,
    "fastapi": "### FastAPI",
    "django": "### Django",
    "flask": "### Flask and other WSGI hosts",
}
# Hosts served by a real server over loopback, and the host whose examples they serve.
SERVED = {"django under uvicorn": "django", "flask under waitress": "flask"}


def django_home(_request: HttpRequest) -> HttpResponse:
    return HttpResponse("the host's own page")


# The Django host's own pages (its ROOT_URLCONF is this module), beside the console.
urlpatterns = [path("home", django_home)]


@attrs.frozen
class Answer:
    status: int
    text: str
    location: str | None


class Browser(Protocol):
    """A host's test client, keeping cookies between requests as a browser does."""

    @property
    def origin(self) -> str:
        """The origin the client addresses the host at, which a browser sends with a form."""

    def get(self, url: str, headers: Mapping[str, str] = ...) -> Answer: ...

    def post(self, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer: ...


@attrs.frozen
class AsgiBrowser:
    client: TestClient
    origin: str = "http://testserver"

    def get(self, url: str, headers: Mapping[str, str] = {}) -> Answer:
        response = self.client.get(url, headers=dict(headers), follow_redirects=False)
        return Answer(response.status_code, response.text, response.headers.get("location"))

    def post(self, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        response = self.client.post(
            url, data=dict(form), headers=dict(headers), follow_redirects=False
        )
        return Answer(response.status_code, response.text, response.headers.get("location"))


@attrs.frozen
class FlaskBrowser:
    client: Any  # flask.testing.FlaskClient
    origin: str = "http://localhost"

    def get(self, url: str, headers: Mapping[str, str] = {}) -> Answer:
        response = self.client.get(url, headers=dict(headers))
        return Answer(
            response.status_code, response.get_data(as_text=True), response.headers.get("location")
        )

    def post(self, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        response = self.client.post(url, data=dict(form), headers=dict(headers))
        return Answer(
            response.status_code, response.get_data(as_text=True), response.headers.get("location")
        )


@attrs.frozen
class HttpBrowser:
    """Real HTTP to a server on loopback, keeping cookies as a browser does."""

    client: httpx.Client
    origin: str

    def get(self, url: str, headers: Mapping[str, str] = {}) -> Answer:
        response = self.client.get(url, headers=dict(headers))
        return Answer(response.status_code, response.text, response.headers.get("location"))

    def post(self, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        response = self.client.post(url, data=dict(form), headers=dict(headers))
        return Answer(response.status_code, response.text, response.headers.get("location"))


@attrs.frozen
class Host:
    store: InMemoryStore
    browser: Browser


def _run_examples(host: str) -> dict[str, Any]:
    """The namespace of the page's mounting example followed by ``host``'s own."""
    blocks = [example_after(PAGE, "## Mounting it in your application")]
    heading = HOSTS[host]
    if heading is not None:
        blocks.append(example_after(PAGE, heading))
    return dict(vars(run_blocks(blocks, f"incsync_docs_console_{host}")))


def _browser(host: str, namespace: dict[str, Any]) -> Browser:
    if host == "flask":
        return FlaskBrowser(namespace["flask_app"].test_client())
    return AsgiBrowser(TestClient(namespace["application" if host == "django" else "app"]))


def _stop_adapter_loop(namespace: dict[str, Any]) -> None:
    """Stop and close the event loop a2wsgi runs the console on, in a thread of its own."""
    loop = namespace["flask_app"].wsgi_app.mounts[PREFIX].loop
    loop.call_soon_threadsafe(loop.stop)
    while loop.is_running():
        time.sleep(0.001)
    loop.close()


@contextmanager
def _served(host: str, namespace: dict[str, Any]) -> Iterator[Browser]:
    """The host's application on a real server over loopback, and a client speaking HTTP to it."""
    serving = (
        served_wsgi(namespace["flask_app"]) if host == "flask" else served(namespace["application"])
    )
    with serving as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        yield HttpBrowser(client, base_url)


@pytest.fixture(params=[*HOSTS, *SERVED])
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    name = SERVED.get(request.param, request.param)
    with django_settings(ALLOWED_HOSTS=["testserver", "127.0.0.1"], ROOT_URLCONF=__name__):
        namespace = _run_examples(name)
        store: InMemoryStore = namespace["store"]
        SyncEngine(store).run_cycle(
            SYNCED, InMemoryConnector(sample_source(20, end=datetime.now(timezone.utc)))
        )
        try:
            if request.param in SERVED:
                with _served(name, namespace) as browser:
                    yield Host(store, browser)
            else:
                yield Host(store, _browser(name, namespace))
        finally:
            if name == "flask":
                _stop_adapter_loop(namespace)


def _addresses(page: str) -> list[str]:
    """Every address on the page that leads somewhere on the site: links, forms, scripts, and
    the ``next`` each of them carries."""
    found = [
        unescape(value)
        for value in re.findall(r'(?:href|src|action|data-[\w-]+-url)="(/[^"]*)"', page)
    ]
    found += re.findall(r'name="next" value="([^"]*)"', page)
    return found + [
        next_url
        for address in found
        for next_url in parse_qs(urlsplit(address).query).get("next", [])
    ]


def _open_reset(host: Host) -> tuple[str, dict[str, str]]:
    """Follow the list's Reset link of the synced source as ana; return the confirmation page
    and the fields its form posts (the CSRF token among them)."""
    listing = host.browser.get(f"{PREFIX}/", ANA).text
    link = re.search(
        rf'href="({PREFIX}/confirm\?key={SYNCED}&amp;action=reset&amp;[^"]*)"', listing
    )
    assert link is not None, "the list offers no Reset"
    page = host.browser.get(unescape(link.group(1)), ANA)
    assert page.status == 200, page.text
    assert f'<form method="post" action="{PREFIX}/act"' in page.text
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text)
    return page.text, {name: unescape(value) for name, value in fields}


def test_the_prefix_lists_the_sources_and_every_address_stays_under_it(host: Host) -> None:
    """The list is at the prefix (and at it without its slash), naming the page's sources."""
    page = host.browser.get(f"{PREFIX}/")
    assert page.status == 200
    for name in (SYNCED, NEVER_RUN):
        assert f'<a href="{PREFIX}/source?key={name}">{name}</a>' in page.text
    addresses = _addresses(page.text)
    assert f"{PREFIX}/rows" in addresses
    assert [a for a in addresses if not a.startswith(f"{PREFIX}/")] == []
    bare = host.browser.get(PREFIX)
    assert bare.status in {307, 308}
    assert bare.location is not None
    assert urlsplit(bare.location).path == f"{PREFIX}/"


def test_the_confirmation_keeps_every_address_under_the_prefix(host: Host) -> None:
    page, form = _open_reset(host)
    assert form["next"] == f"{PREFIX}/"  # back to the list after the change
    addresses = _addresses(page)
    assert f"{PREFIX}/act" in addresses
    assert [a for a in addresses if not a.startswith(f"{PREFIX}/")] == []


def test_a_post_without_the_token_or_the_hosts_user_changes_nothing(host: Host) -> None:
    """No token, a forged token, or a valid token without a user the host accepts: a 403."""
    before = host.store.load(SYNCED)
    _, form = _open_reset(host)
    without_token = {name: value for name, value in form.items() if name != "csrf"}
    origin = {"origin": host.browser.origin}
    for fields, headers in (
        (without_token, {**origin, **ANA}),
        ({**form, "csrf": "0" * 64}, {**origin, **ANA}),
        (form, origin),
        (form, {**origin, "x-forwarded-user": "mallory@example.com"}),
    ):
        answer = host.browser.post(f"{PREFIX}/act", fields, headers)
        assert answer.status == 403, (fields, headers)
    assert host.store.load(SYNCED) == before
    assert host.store.actions(SYNCED) == []


def test_the_hosts_user_resets_a_source_with_the_forms_token(host: Host) -> None:
    """The Reset is made, kept under the host's user, and leads back under the prefix."""
    before = host.store.load(SYNCED)
    assert before.cursor is not None
    _, form = _open_reset(host)
    answer = host.browser.post(f"{PREFIX}/act", form, {"origin": host.browser.origin, **ANA})
    assert answer.status == 303, answer.text
    assert answer.location is not None
    assert urlsplit(answer.location).path == f"{PREFIX}/"
    after = host.store.load(SYNCED)
    assert (after.phase, after.cursor, after.generation) == (
        Phase.RESETTING,
        None,
        before.generation + 1,
    )
    [entry] = host.store.actions(SYNCED)
    assert (entry.action, entry.actor) == (Action.RESET, "ana@example.com")
    assert host.browser.get(f"{PREFIX}/").status == 200


def test_the_django_host_still_serves_its_own_pages() -> None:
    with django_settings(ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__):
        browser = _browser("django", _run_examples("django"))
        home = browser.get("/home")
        assert (home.status, home.text) == (200, "the host's own page")
        assert browser.get(f"{PREFIX}x/").status == 404  # a longer path is not the console's
