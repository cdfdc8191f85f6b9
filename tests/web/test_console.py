"""The console's pages and its gates, through Starlette's test client on a real store.

What a change needs is checked one gate at a time: each refusal is a 403 that leaves the state
and the action log as they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path

import attrs
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from incsync.actions import Action
from incsync.errors import ConfigurationError
from incsync.integrations.web import create_app
from incsync.integrations.web._view import element_id
from incsync.state import CountCheck, ErrorInfo, Phase
from incsync.status import StatusColor
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import InMemoryStore
from incsync.views import PALETTE
from tests.web.world import CONFIGURED, GREEN, GREY, HOSTILE, RED, build

UTC = timezone.utc
NOW = datetime.now(UTC).replace(microsecond=0)
ORIGIN = "http://testserver"
SECRET = "correct horse battery staple"


def _allow_ana(_request: Request, _action: Action, _key: str) -> str:
    return "ana"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "console.db") as sqlite:
        build(sqlite, NOW)
        yield sqlite


def _client(store: SQLiteStore, **settings: object) -> TestClient:
    app = create_app(store, sources=CONFIGURED, clock=lambda: NOW, **settings)  # type: ignore[arg-type]
    return TestClient(app, base_url=ORIGIN)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, "the page carries no CSRF token"
    return str(found.group(1))


def _row(page: str, key: str) -> str:
    """The HTML of the list's row of ``key``."""
    rows: list[str] = re.findall(r"<tr class=\"row.*?</tr>", page, re.S)
    named = [row for row in rows if f'id="{element_id(key)}"' in row]
    assert len(named) == 1, key
    return named[0]


# -- reading --------------------------------------------------------------------------------------


def test_the_list_names_every_source_with_status_and_times(store: SQLiteStore) -> None:
    """Every configured source is listed, the never-run one too, each with its circle and times."""
    page = _client(store).get("/").text
    for key in CONFIGURED:
        assert f'id="{element_id(key)}"' in page
    assert 'data-color="green"' in _row(page, GREEN)
    assert 'data-color="red"' in _row(page, RED)
    assert 'data-color="grey"' in _row(page, GREY)
    green = _row(page, GREEN)
    assert "Active" in green
    assert "1 hour ago" in green
    assert "just now" in green
    # The exact times are in the row's details, not only in a title attribute.
    assert f"Last completed sync: {NOW:%Y-%m-%d %H:%M:%S} UTC." in green
    assert "title=" not in green


def test_a_red_row_says_why_and_what_to_do_inline(store: SQLiteStore) -> None:
    """The stopped source shows its reason, its next step and the error, outside the details."""
    red = _row(_client(store).get("/").text, RED)
    inline = re.search(r'<p class="inline">(.*?)</p>', red, re.S)
    assert inline is not None
    text = unescape(inline.group(1))
    assert "Synchronization stopped after repeated errors." in text
    assert "Credentials rejected: reconnect the source, then resume it." in text
    assert "AuthError: 401 Unauthorized" in text


def test_names_errors_and_records_from_outside_are_inert(store: SQLiteStore) -> None:
    """Markup is escaped and terminal escapes are shown as text, on the list and a source's page."""
    client = _client(store)
    page = client.get("/").text
    assert "<b>" not in page
    assert "\x1b" not in page
    assert "Stark &lt;b&gt;CRM&lt;/b&gt; &#34;x&#34; &amp; \\x1b[2J" in page
    assert "&lt;b&gt;invalid_grant&lt;/b&gt; \\x1b[31mrefresh" in page
    source = client.get("/source", params={"key": GREEN}).text
    assert "<script>" not in source
    assert "<img" not in source
    assert "\x1b" not in source
    assert "\u202e" not in source
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in source
    assert "Record bidi\\u202etxt" in source


def test_filter_search_sort_and_pages(tmp_path: Path) -> None:
    """The server pages the list; colour, search and sort narrow and order it."""
    with SQLiteStore(tmp_path / "many.db") as many:
        build(many, NOW)
        keys = [f"tenant-{number:03d}/ledger" for number in range(120)]
        client = TestClient(
            create_app(many, sources=[*CONFIGURED, *keys], clock=lambda: NOW), base_url=ORIGIN
        )
        first = client.get("/").text
        assert "124 sources · page 1 of 3" in unescape(first)
        assert first.count('<tr class="row') == 50
        # Status order: the red source comes first.
        assert first.index(element_id(RED)) < first.index(element_id("tenant-000/ledger"))
        last = client.get("/", params={"page": "99"}).text
        assert "page 3 of 3" in last
        assert last.count('<tr class="row') == 24
        red = client.get("/", params={"color": "red"}).text
        assert red.count('<tr class="row') == 1
        assert "1 source (of 124)" in unescape(red)
        found = client.get("/", params={"q": "TENANT-07"}).text
        assert found.count('<tr class="row') == 10
        named = client.get("/", params={"sort": "-name"}).text
        assert named.index(element_id("tenant-119/ledger")) < named.index(
            element_id("tenant-118/ledger")
        )
        # A mistyped address shows the list, as it would be by default.
        assert (
            client.get("/", params={"color": "purple", "sort": "?", "page": "x"}).status_code == 200
        )


def test_the_rows_answer_304_until_something_changes(store: SQLiteStore) -> None:
    """Polling costs a 304 while nothing changed; a change gives new rows at once."""
    client = _client(store, authorize=_allow_ana)
    first = client.get("/rows")
    tag = first.headers["etag"]
    assert client.get("/rows", headers={"if-none-match": tag}).status_code == 304
    store.cancel(GREEN)
    changed = client.get("/rows", headers={"if-none-match": tag})
    assert changed.status_code == 200
    assert 'data-color="grey"' in _row(changed.text, GREEN)


def test_the_rows_change_with_the_minute(store: SQLiteStore) -> None:
    """Relative times are words to the minute: a new minute gives new rows, however quiet."""
    now = [NOW.replace(second=10)]
    client = TestClient(
        create_app(store, sources=CONFIGURED, clock=lambda: now[0]), base_url=ORIGIN
    )
    tag = client.get("/rows").headers["etag"]
    now[0] = NOW.replace(second=50)
    assert client.get("/rows", headers={"if-none-match": tag}).status_code == 304
    now[0] = NOW.replace(second=10) + timedelta(minutes=1)
    assert client.get("/rows", headers={"if-none-match": tag}).status_code == 200


def test_german_words_relative_times_and_the_viewers_zone(store: SQLiteStore) -> None:
    """German from Accept-Language, "vor 12 Tagen", exact times in the browser's zone."""
    client = _client(store)
    client.cookies.set("incsync_zone", "Europe/Berlin")
    page = client.get("/", headers={"accept-language": "de-DE,de;q=0.9,en;q=0.5"}).text
    assert '<html lang="de">' in page
    grey = _row(page, GREY)
    assert "Abgebrochen" in grey
    assert "vor 12 Tagen" in grey
    berlin = NOW.astimezone(ZoneBerlin.zone)
    assert f"{berlin:%Y-%m-%d %H:%M:%S} ME" in grey  # MEZ or MESZ
    assert "Zugangsdaten abgelehnt" in _row(page, RED)
    # An unknown zone falls back to the console's; a chosen language wins over the browser's.
    client.cookies.set("incsync_zone", "Mars/Olympus")
    client.cookies.set("incsync_lang", "en")
    english = client.get("/", headers={"accept-language": "de"}).text
    assert '<html lang="en">' in english
    assert " UTC." in english


class ZoneBerlin:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Berlin")


def test_the_source_page(store: SQLiteStore) -> None:
    """History (chart and table, actions included), set-aside records, cursor, lease, counts."""
    page = unescape(_client(store).get("/source", params={"key": GREY}).text)
    assert "Cancelled by ana" in page
    assert "Completed" in page
    assert "5 read, 5 applied, 0 set aside" in page
    assert '<svg viewBox="0 0 300 60" role="img"' in page
    assert "after record r0004" in page
    assert "No cycle holds it." in page
    green = unescape(_client(store).get("/source", params={"key": GREEN}).text)
    assert "Records set aside" in green
    assert "The source counted 30 live records, the host held 30" in green
    assert _client(store).get("/source", params={"key": "nobody"}).status_code == 404


def test_security_headers(store: SQLiteStore) -> None:
    """Every page forbids inline scripts, framing and fetches from elsewhere."""
    response = _client(store).get("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "incsync_csrf" in response.headers["set-cookie"]
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=strict" in response.headers["set-cookie"].lower()


def test_mounted_under_a_prefix(store: SQLiteStore) -> None:
    """Mounted in a host's Starlette app, every link and form stays under the mount."""
    host = Starlette(routes=[Mount("/ops/import", create_app(store, sources=CONFIGURED))])
    page = TestClient(host, base_url=ORIGIN).get("/ops/import/").text
    assert 'href="/ops/import/console.css"' in page
    assert 'src="/ops/import/static/console.js"' in page
    stylesheet = TestClient(host, base_url=ORIGIN).get("/ops/import/console.css").text
    # The circles' colours are the palette every view draws with.
    assert f"--dot-red:{PALETTE[StatusColor.RED]};" in stylesheet
    assert ".dot-red { background: var(--dot-red); }" in stylesheet
    assert 'href="/ops/import/source?key=acme%2Finvoices"' in page
    assert 'data-rows-url="/ops/import/rows"' in page


# -- changing -------------------------------------------------------------------------------------


def _prepared(client: TestClient, key: str = GREEN, action: str = "cancel") -> str:
    """Open the confirmation page as a person would; return its CSRF token."""
    page = client.get("/confirm", params={"key": key, "action": action, "next": "/"})
    assert page.status_code == 200, page.text
    return _csrf(page.text)


def _unchanged(store: SQLiteStore) -> None:
    assert store.load(GREEN).phase is Phase.ACTIVE
    assert store.actions(GREEN) == []


def test_a_confirmed_action_is_made_and_recorded(store: SQLiteStore) -> None:
    """Confirm → the change is made, kept with who and when, and the list shows it."""
    client = _client(store, authorize=_allow_ana)
    token = _prepared(client)
    confirm = client.get("/confirm", params={"key": GREEN, "action": "cancel"}).text
    assert "Stops syncing; no transaction is deleted." in confirm
    response = client.post(
        "/act",
        data={"key": GREEN, "action": "cancel", "csrf": token, "next": "/?q=acme"},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/?q=acme"
    assert store.load(GREEN).phase is Phase.CANCELLED
    [entry] = store.actions(GREEN)
    assert (entry.action, entry.actor, entry.at) == (Action.CANCEL, "ana", NOW)
    assert 'data-color="grey"' in _row(client.get("/").text, GREEN)
    assert "Cancelled by ana" in client.get("/source", params={"key": GREEN}).text


def test_a_post_without_the_csrf_token_changes_nothing(store: SQLiteStore) -> None:
    client = _client(store, authorize=_allow_ana)
    _prepared(client)
    for form in (
        {"key": GREEN, "action": "cancel"},
        {"key": GREEN, "action": "cancel", "csrf": "0" * 64},
    ):
        response = client.post("/act", data=form, headers={"origin": ORIGIN})
        assert response.status_code == 403
        assert "This form has expired" in response.text
    _unchanged(store)


def test_a_token_from_another_browser_changes_nothing(store: SQLiteStore) -> None:
    """The token belongs to its cookie: another browser's token is refused."""
    token = _prepared(_client(store, authorize=_allow_ana))
    other = _client(store, authorize=_allow_ana)
    _prepared(other)
    response = other.post(
        "/act", data={"key": GREEN, "action": "cancel", "csrf": token}, headers={"origin": ORIGIN}
    )
    assert response.status_code == 403
    _unchanged(store)


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"referer": "https://evil.example/page"},
        {},
    ],
    ids=["other-origin", "null-origin", "other-referer", "no-origin"],
)
def test_a_post_from_another_origin_changes_nothing(
    store: SQLiteStore, headers: dict[str, str]
) -> None:
    client = _client(store, authorize=_allow_ana)
    token = _prepared(client)
    response = client.post(
        "/act", data={"key": GREEN, "action": "cancel", "csrf": token}, headers=headers
    )
    assert response.status_code == 403
    assert "did not come from the console" in response.text
    _unchanged(store)


def test_an_allowed_origin_behind_a_proxy_passes(store: SQLiteStore) -> None:
    client = _client(store, authorize=_allow_ana, allowed_origins=["https://ops.example.com"])
    token = _prepared(client)
    response = client.post(
        "/act",
        data={"key": GREEN, "action": "cancel", "csrf": token},
        headers={"referer": "https://ops.example.com/import/"},
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_without_authorization_the_console_is_read_only(store: SQLiteStore) -> None:
    """No callback: no action buttons, and a forged post is refused."""
    client = _client(store)
    page = client.get("/").text
    assert "Read-only" in page
    assert "/confirm?" not in page
    assert client.get("/confirm", params={"key": GREEN, "action": "cancel"}).status_code == 403
    # A read-only page has no form, so no token to take: a forged post has none either.
    assert 'name="csrf"' not in page
    response = client.post(
        "/act",
        data={"key": GREEN, "action": "cancel", "csrf": "0" * 64},
        headers={"origin": ORIGIN},
    )
    assert response.status_code == 403
    assert client.get("/sign-in").status_code == 404
    _unchanged(store)


def test_the_callback_decides_per_action_and_source(store: SQLiteStore) -> None:
    """A callback refusing (None) gets a 403; it sees the action and the key."""
    asked: list[tuple[Action, str]] = []

    def only_resets(_request: Request, action: Action, key: str) -> str | None:
        asked.append((action, key))
        return "ana" if action is Action.RESET else None

    client = _client(store, authorize=only_resets)
    token = _prepared(client, action="reset")
    response = client.post(
        "/act", data={"key": GREEN, "action": "cancel", "csrf": token}, headers={"origin": ORIGIN}
    )
    assert response.status_code == 403
    _unchanged(store)
    assert (Action.CANCEL, GREEN) in asked


def test_unknown_sources_and_actions_change_nothing(store: SQLiteStore) -> None:
    """A key the console does not list is not created by a post; an unknown action is refused."""
    client = _client(store, authorize=_allow_ana)
    token = _prepared(client)
    unknown = client.post(
        "/act", data={"key": "nobody", "action": "reset", "csrf": token}, headers={"origin": ORIGIN}
    )
    assert unknown.status_code == 404
    assert "nobody" not in {state.key for state in store.list_states()}
    bad = client.post(
        "/act", data={"key": GREEN, "action": "drop", "csrf": token}, headers={"origin": ORIGIN}
    )
    assert bad.status_code == 400
    _unchanged(store)


def test_next_cannot_lead_off_site(store: SQLiteStore) -> None:
    client = _client(store, authorize=_allow_ana)
    token = _prepared(client)
    response = client.post(
        "/act",
        data={"key": GREEN, "action": "cancel", "csrf": token, "next": "//evil.example/"},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/source?key=acme%2Finvoices"


def test_a_refused_actor_name_changes_nothing(store: SQLiteStore) -> None:
    """A callback returning a name the log cannot keep is an error, not a silent change."""
    client = _client(store, authorize=lambda _r, _a, _k: "\x1b[2J")
    with pytest.raises(ConfigurationError, match="actor"):
        _prepared(client)
    _unchanged(store)


# -- signing in with the secret -----------------------------------------------------------------


def _sign_in(client: TestClient, secret: str, name: str = "ana") -> int:
    token = _csrf(client.get("/sign-in").text)
    response = client.post(
        "/sign-in",
        data={"name": name, "secret": secret, "csrf": token},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    return response.status_code


def test_the_secret_signs_a_person_in(store: SQLiteStore) -> None:
    """With the right secret and a name, the person may act under that name."""
    client = _client(store, secret=SECRET)
    assert "Sign in to change sources" in client.get("/").text
    assert client.get("/confirm", params={"key": GREEN, "action": "cancel"}).status_code == 403
    assert _sign_in(client, "wrong secret, long enough") == 403
    assert _sign_in(client, SECRET, name=" ") == 403
    assert _sign_in(client, SECRET) == 303
    assert "Signed in as ana" in client.get("/").text
    token = _prepared(client)
    client.post(
        "/act", data={"key": GREEN, "action": "cancel", "csrf": token}, headers={"origin": ORIGIN}
    )
    assert [entry.actor for entry in store.actions(GREEN)] == ["ana"]


def test_a_forged_or_expired_sign_in_is_refused(store: SQLiteStore) -> None:
    later = [NOW]
    client = TestClient(
        create_app(
            store,
            sources=CONFIGURED,
            secret=SECRET,
            clock=lambda: later[0],
            sign_in_duration=timedelta(hours=1),
        ),
        base_url=ORIGIN,
    )
    assert _sign_in(client, SECRET) == 303
    cookie = client.cookies["incsync_signed_in"]
    assert cookie.startswith("YW5h.")  # "ana"
    client.cookies.delete("incsync_signed_in")
    client.cookies.set("incsync_signed_in", "YWRt" + cookie[4:])  # "adm", same signature
    assert client.get("/confirm", params={"key": GREEN, "action": "cancel"}).status_code == 403
    client.cookies.delete("incsync_signed_in")
    client.cookies.set("incsync_signed_in", cookie)
    assert client.get("/confirm", params={"key": GREEN, "action": "cancel"}).status_code == 200
    later[0] = NOW + timedelta(hours=2)
    assert client.get("/confirm", params={"key": GREEN, "action": "cancel"}).status_code == 403


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 16"):
        create_app(InMemoryStore(), secret="short")


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="language"):
        create_app(InMemoryStore(), language="fr")
    with pytest.raises(ConfigurationError, match="poll_interval"):
        create_app(InMemoryStore(), poll_interval=timedelta(0))
    assert HOSTILE in CONFIGURED


# -- the rest of what a viewer meets -------------------------------------------------------------


def test_the_viewer_chooses_the_language(store: SQLiteStore) -> None:
    """The links at the foot of the page set the language; the way back stays on the site."""
    client = _client(store)
    back = f"/source?key={GREEN.replace('/', '%2F')}"
    chosen = client.get("/language", params={"lang": "de", "next": back}, follow_redirects=False)
    assert chosen.status_code == 303
    assert chosen.headers["location"] == back
    assert '<html lang="de">' in client.get(back).text
    ignored = client.get("/language", params={"lang": "xx", "next": "//evil.example"})
    assert ignored.url.path == "/"
    assert '<html lang="de">' in ignored.text
    control = client.get("/language", params={"next": "/\r\nSet-Cookie:x"}, follow_redirects=False)
    assert control.headers["location"] == "/"


def test_signing_out(store: SQLiteStore) -> None:
    client = _client(store, secret=SECRET)
    assert _sign_in(client, SECRET) == 303
    page = client.get("/").text
    assert client.post("/sign-out", data={"csrf": _csrf(page)}).status_code == 403  # no origin
    out = client.post(
        "/sign-out", data={"csrf": _csrf(page)}, headers={"origin": ORIGIN}, follow_redirects=False
    )
    assert out.status_code == 303
    assert "Sign in to change sources" in client.get("/").text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"key": "acme/invoices", "action": "cancel"}', "application/json"),
        (b"key=acme%2Finvoices&action=cancel&pad=" + b"x" * 20_000, None),
        (b"key=\xff\xfe&action=cancel", None),
    ],
    ids=["json", "too-large", "not-utf-8"],
)
def test_malformed_posts_change_nothing(
    store: SQLiteStore, content: bytes, content_type: str | None
) -> None:
    client = _client(store, authorize=_allow_ana)
    _prepared(client)
    response = client.post(
        "/act",
        content=content,
        headers={
            "origin": ORIGIN,
            "content-type": content_type or "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 403
    _unchanged(store)


def test_confirming_an_unknown_source_or_action(store: SQLiteStore) -> None:
    client = _client(store, authorize=_allow_ana)
    assert client.get("/confirm", params={"key": "nobody", "action": "reset"}).status_code == 404
    assert client.get("/confirm", params={"key": GREEN, "action": "drop"}).status_code == 404
    secretless = _client(store, authorize=_allow_ana)
    assert secretless.post("/sign-in", data={}, headers={"origin": ORIGIN}).status_code == 404


def test_sorting_by_times_puts_the_never_synced_last(store: SQLiteStore) -> None:
    client = _client(store)
    for sort in ("last_sync", "-last_sync", "last_change", "-last_change"):
        page = client.get("/", params={"sort": sort}).text
        # The never-run source has neither time: last whichever way.
        assert page.rindex('<tr class="row') < page.index(element_id(HOSTILE)), sort
    newest = client.get("/", params={"sort": "last_change"}).text
    assert newest.index(element_id(GREEN)) < newest.index(element_id(GREY))
    oldest = client.get("/", params={"sort": "-last_change"}).text
    assert oldest.index(element_id(GREY)) < oldest.index(element_id(GREEN))


def test_details_of_a_running_waiting_drifting_source(store: SQLiteStore) -> None:
    """A running cycle's lease, a wait the source asked for and a count that disagrees."""
    store.acquire_lease(GREEN, "worker-9 <pid 7>", NOW, timedelta(minutes=10))
    store._update(
        GREEN,
        lambda state: attrs.evolve(
            state,
            not_before=NOW + timedelta(hours=1),
            count_check=CountCheck(source=12_345, host=12_300, at=NOW),
        ),
    )
    green = unescape(_row(_client(store).get("/").text, GREEN))
    assert "A cycle is running: worker-9 <pid 7> holds the lease until" in green
    assert "The source asked not to be called before" in green
    assert "The source has 12,345 live records; 12,300 are imported" in green
    assert "The last cycle set 2 records aside" in green
    german = _client(store, language="de").get("/").text
    assert "Die Quelle hat 12.345 aktive Datensätze; 12.300 sind importiert" in unescape(german)


def test_an_overdue_source_says_to_check_the_scheduler(store: SQLiteStore) -> None:
    """Red for silence: the next step is the scheduler, not the source."""
    store._update(
        GREEN,
        lambda state: attrs.evolve(
            state, last_sync=NOW - timedelta(hours=10), last_attempt=NOW - timedelta(hours=10)
        ),
    )
    row = unescape(_row(_client(store).get("/").text, GREEN))
    assert 'data-color="red"' in row
    assert "No synchronization was attempted when one was due." in row
    assert "Check that the scheduler that starts cycles (incsync run) is running." in row


def test_a_failing_source_names_its_error_in_the_details(store: SQLiteStore) -> None:
    store._update(
        GREEN,
        lambda state: attrs.evolve(
            state,
            consecutive_failures=2,
            last_error=ErrorInfo("TransientSourceError", "502 \x1b[2J from the API", NOW),
        ),
    )
    row = unescape(_row(_client(store).get("/").text, GREEN))
    assert "Last error (" in row
    assert "TransientSourceError: 502 \\x1b[2J from the API" in row
    assert "2 failed attempts in a row." in row
