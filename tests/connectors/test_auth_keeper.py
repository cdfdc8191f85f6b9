"""OAuth2Refresh with a token keeper: checked before a refresh, saved before use, read again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from incsync.connectors import OAuth2Refresh, RetryPolicy
from incsync.connectors.http import HttpOptions
from incsync.cursor import Window
from incsync.errors import AuthError, SourceError
from incsync.protocols import TokenKeeper
from incsync.testing import ManualClock
from incsync.tokens import StoredTokens, StoreTokenKeeper
from tests.connectors.fakeapi import CLIENT_ID, CLIENT_SECRET, ItemsConnector, OAuthApi, item
from tests.helpers import Store

NOW = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
TOKEN_URL = "http://fake/oauth/token"


class Keeper:
    """A keeper in memory whose check, save and load can be made to fail or go stale."""

    def __init__(self, kept: StoredTokens | None = None) -> None:
        self.kept = kept
        self.saved: list[StoredTokens] = []
        self.checks = 0
        self.loads = 0
        self.refuse_check = False
        self.refuse_save = False
        self.stale: list[StoredTokens | None] = []  # answered by the next loads, oldest first

    def load(self) -> StoredTokens | None:
        self.loads += 1
        return self.stale.pop(0) if self.stale else self.kept

    def check(self) -> None:
        self.checks += 1
        if self.refuse_check:
            raise SourceError("/srv/tokens.json cannot be written; make it writable")

    def save(self, tokens: StoredTokens) -> None:
        if self.refuse_save:
            raise SourceError("the disk is full")
        self.kept = tokens
        self.saved.append(tokens)


def _connector(api: OAuthApi, keeper: TokenKeeper, clock: ManualClock) -> ItemsConnector:
    auth = OAuth2Refresh(
        TOKEN_URL,
        CLIENT_ID,
        CLIENT_SECRET,
        "rt_SENTINEL_initial_grant",
        access_token="at_SENTINEL_1",
        expires_at=NOW + timedelta(hours=1),
        keeper=keeper,
        clock=clock,
    )
    options = HttpOptions(transport=api.transport(), retry=RetryPolicy(max_attempts=1), clock=clock)
    return ItemsConnector("http://fake", auth=auth, options=options)


def _expired(api: OAuthApi, clock: ManualClock) -> tuple[Keeper, ItemsConnector]:
    """A keeper holding the vendor's refresh token, and a connector whose access token is dead."""
    keeper = Keeper(StoredTokens(api.refresh_token))
    connector = _connector(api, keeper, clock)
    api.expire_access_tokens()
    return keeper, connector


def _read(connector: ItemsConnector) -> list[str]:
    return [record.id for page in connector.read(Window()) for record in page.records]


@pytest.fixture
def api() -> OAuthApi:
    return OAuthApi([item(1, NOW - timedelta(days=1))])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def test_the_keeper_s_tokens_replace_the_initial_grant_at_the_first_request(
    api: OAuthApi, clock: ManualClock
) -> None:
    """Tokens the keeper holds are newer than the grant given to the constructor: used first."""
    keeper, connector = _expired(api, clock)
    assert _read(connector) == ["i1"]
    assert api.token_forms[0]["refresh_token"] == "rt_SENTINEL_1"  # the keeper's, not the grant
    renewed = StoredTokens("rt_SENTINEL_2", "at_SENTINEL_2", NOW + timedelta(hours=1))
    assert keeper.saved == [renewed]
    assert "rt_SENTINEL_initial_grant" in connector.secrets()  # still masked


def test_no_refresh_is_sent_when_the_new_tokens_could_not_be_kept(
    api: OAuthApi, clock: ManualClock
) -> None:
    """The keeper's check fails: no token request reaches the vendor, the refresh token it
    holds stays valid there, and the check's message is the error. Once it passes, it works."""
    keeper, connector = _expired(api, clock)
    keeper.refuse_check = True
    with pytest.raises(SourceError, match="cannot be written; make it writable"):
        _read(connector)
    assert api.token_forms == []
    assert api.refresh_token == "rt_SENTINEL_1"
    keeper.refuse_check = False
    assert _read(connector) == ["i1"]
    assert [form["refresh_token"] for form in api.token_forms] == ["rt_SENTINEL_1"]


def test_an_answer_the_keeper_refused_is_saved_before_its_access_token_is_used(
    api: OAuthApi, clock: ManualClock
) -> None:
    """The save fails after the vendor rotated: the cycle fails, the new access token is not
    sent, and the next request saves the tokens first, without a second refresh."""
    keeper, connector = _expired(api, clock)
    keeper.refuse_save = True
    with pytest.raises(SourceError, match="the disk is full"):
        _read(connector)
    assert api.refreshes == 1
    with pytest.raises(SourceError, match="the disk is full"):
        _read(connector)
    sent = [r.headers.get("authorization") for r in api.requests if "/api/" in r.url]
    assert len(sent) == 1  # only the request that met the expired token went out
    keeper.refuse_save = False
    assert _read(connector) == ["i1"]
    assert api.refreshes == 1
    assert keeper.kept == StoredTokens("rt_SENTINEL_2", "at_SENTINEL_2", NOW + timedelta(hours=1))


def test_a_token_another_worker_refreshed_is_used_without_a_refresh(
    api: OAuthApi, clock: ManualClock
) -> None:
    """Before refreshing, the keeper is read again: another worker's fresh access token is used."""
    keeper = Keeper(StoredTokens(api.refresh_token))
    connector = _connector(api, keeper, clock)
    assert _read(connector) == ["i1"]
    api.expire_access_tokens()
    api.valid_access_tokens.add("at_SENTINEL_other_worker")
    keeper.kept = StoredTokens("rt_SENTINEL_other", "at_SENTINEL_other_worker", NOW + timedelta(1))
    assert _read(connector) == ["i1"]
    assert api.token_forms == []


def test_a_refusal_after_another_worker_rotated_is_retried_once_with_its_token(
    api: OAuthApi, clock: ManualClock
) -> None:
    """The refresh token was rotated by another worker between this one's read and its request:
    the vendor refuses, the keeper now holds the newer token, and one more refresh succeeds."""
    keeper, connector = _expired(api, clock)
    api.refresh_token = "rt_SENTINEL_rotated_elsewhere"
    keeper.stale = [StoredTokens("rt_SENTINEL_1"), StoredTokens("rt_SENTINEL_1")]
    keeper.kept = StoredTokens("rt_SENTINEL_rotated_elsewhere")
    assert _read(connector) == ["i1"]
    assert [form["refresh_token"] for form in api.token_forms] == [
        "rt_SENTINEL_1",
        "rt_SENTINEL_rotated_elsewhere",
    ]
    assert keeper.checks == 2


def test_a_refusal_with_nothing_newer_kept_is_the_vendor_s_auth_error(
    api: OAuthApi, clock: ManualClock
) -> None:
    """invalid_grant and the keeper holds the same token: AuthError, one request, no retry."""
    keeper = Keeper(StoredTokens("rt_SENTINEL_revoked"))
    connector = _connector(api, keeper, clock)
    api.expire_access_tokens()
    with pytest.raises(AuthError, match="re-authorise"):
        _read(connector)
    assert len(api.token_forms) == 1


def test_two_workers_sharing_a_store_follow_each_other_s_rotations(
    api: OAuthApi, clock: ManualClock, store: Store
) -> None:
    """Each worker's refresh is saved to the shared row (on every built-in store); the other
    refreshes from it, so a vendor that refuses a used refresh token at once never refuses
    either."""
    first, second = (_connector(api, StoreTokenKeeper(store, "acme"), clock) for _ in range(2))
    api.refresh_token = "rt_SENTINEL_initial_grant"
    for worker in (first, second, first, second):
        clock.advance(timedelta(hours=2))  # every access token kept has expired
        assert _read(worker) == ["i1"]
    presented = [form["refresh_token"] for form in api.token_forms]
    assert presented == ["rt_SENTINEL_initial_grant", *(f"rt_SENTINEL_{n}" for n in (2, 3, 4))]
    assert all(r.status != 400 for r in api.requests)
    kept = StoreTokenKeeper(store, "acme").load()
    assert kept is not None
    assert kept.refresh_token == api.refresh_token


def test_a_worker_whose_save_failed_keeps_the_rotated_token_and_not_the_kept_one(
    api: OAuthApi, clock: ManualClock
) -> None:
    """An unsaved answer is never replaced by the keeper's older row: it is saved first."""
    keeper, connector = _expired(api, clock)
    keeper.refuse_save = True
    with pytest.raises(SourceError):
        _read(connector)
    keeper.refuse_save = False
    api.expire_access_tokens()  # the unsaved access token died meanwhile: refresh with its token
    assert _read(connector) == ["i1"]
    assert [form["refresh_token"] for form in api.token_forms] == ["rt_SENTINEL_1", "rt_SENTINEL_2"]
    assert all(response.status != 400 for response in api.requests)


def test_keeperless_flows_are_unchanged(api: OAuthApi, clock: ManualClock) -> None:
    """Without a keeper nothing is read or checked; on_refresh still receives every refresh."""
    received: list[object] = []
    auth = OAuth2Refresh(
        TOKEN_URL, CLIENT_ID, CLIENT_SECRET, api.refresh_token, on_refresh=received.append
    )
    connector = ItemsConnector(
        "http://fake", auth=auth, options=HttpOptions(transport=api.transport())
    )
    assert _read(connector) == ["i1"]
    assert len(received) == 1
    assert isinstance(api.requests[0].url, str)
    assert httpx.URL(api.requests[0].url).path == "/oauth/token"
