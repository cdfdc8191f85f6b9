"""``incsync check``: each source signs in and reads once, over loopback, and nothing is written."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from incsync.errors import (
    AuthError,
    BadResponseError,
    ConfigurationError,
    PermanentSourceError,
    RateLimitedError,
    TransientSourceError,
)
from incsync.integrations.cli import main
from incsync.integrations.cli._check import Verdict, verdict_of
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.testing.fakes.quickbooks import FakeQuickBooks
from incsync.timestamps import UTC
from tests.cli.support import SAMPLE, incsync, write_config
from tests.cli.test_tokens import ENTITY, _quickbooks

UNLIMITED = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)
TOKEN_ENV = "HUBSPOT_TOKEN"


def _hubspot(key: str, base_url: str) -> str:
    return (
        f'\n[sources.{key}]\ntype = "hubspot"\ntoken_env = "{TOKEN_ENV}"\nbase_url = "{base_url}"\n'
    )


def _fake(limits: HubSpotLimits = UNLIMITED) -> FakeHubSpot:
    fake = FakeHubSpot(index_lag=timedelta(0), limits=limits)
    fake.load("deals", [datetime(2024, 9, 1, tzinfo=UTC)], {"dealname": "d"})
    return fake


def _files(directory: Path) -> dict[str, bytes]:
    """Every file of the directory but the config, with its bytes."""
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.name != "incsync.toml"}


@pytest.fixture
def down_url() -> str:
    """The URL of a fake that stopped serving: its port refuses connections."""
    with _fake().serve() as base_url:
        pass
    return base_url


def test_good_bad_and_unreachable_sources_each_get_their_line_and_nothing_is_written(
    tmp_path: Path, down_url: str
) -> None:
    """Good credentials answer in one request; a refused token and a server that is down are each
    named, the token is never shown, and the database (synced before) is not touched."""
    good, bad = _fake(), _fake()
    with good.serve() as good_url, bad.serve() as bad_url:
        body = SAMPLE + _hubspot("good", good_url) + _hubspot("bad", bad_url)
        path = write_config(tmp_path, body + _hubspot("down", down_url))
        assert incsync("run", "--source", "demo", "--config", str(path), cwd=tmp_path).code == 0
        before = _files(tmp_path)
        bad.private_app_token = "pat-na1-SENTINEL-wrong"
        done = incsync(
            "check", "--config", str(path), cwd=tmp_path, env={TOKEN_ENV: good.private_app_token}
        )
    assert done.code == 1, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "demo: ok",
        "good: ok",
        "bad: credentials rejected",
        "down: unreachable",
    ]
    assert "AuthError: hubspot: HTTP 401" in lines[2]
    assert "TransientSourceError: hubspot: could not connect" in lines[3]
    assert len(good.requests) == 1  # one read request, and no retry of the failures either
    assert len(bad.requests) == 1
    assert good.private_app_token not in done.stdout + done.stderr
    assert _files(tmp_path) == before  # no database row, no token file, nothing new


def test_a_check_writes_no_database_where_there_is_none(tmp_path: Path) -> None:
    """Checking needs no store: none is created, and the exit is 0 when every source answered."""
    fake = _fake()
    with fake.serve() as base_url:
        path = write_config(tmp_path, _hubspot("hub", base_url))
        done = incsync(
            "check", "hub", "--config", str(path), cwd=tmp_path,
            env={TOKEN_ENV: fake.private_app_token},
        )  # fmt: skip
    assert (done.code, done.stdout.split(" (")[0]) == (0, "hub: ok"), done.stderr
    assert _files(tmp_path) == {}


def test_a_throttled_source_and_a_config_error_are_named_and_json_gives_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A used-up daily quota is "throttled"; a source whose variable is unset is a config error
    (exit 2, as for any config error), and the other sources are still checked."""
    fake = _fake(HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=1))
    monkeypatch.setenv(TOKEN_ENV, fake.private_app_token)
    with fake.serve() as base_url:
        unset = _hubspot("unset", base_url).replace(TOKEN_ENV, "UNSET_TOKEN")
        body = _hubspot("first", base_url) + _hubspot("busy", base_url) + unset
        path = write_config(tmp_path, body)
        assert main(["check", "--json", "--config", str(path)]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["schema"] == "incsync.check/1"
    assert document["ok"] is False
    first, busy, unset = document["sources"]
    assert (first["key"], first["ok"], first["verdict"], first["message"]) == (
        "first",
        True,
        "ok",
        None,
    )  # it used the day's one call
    assert (busy["key"], busy["ok"], busy["verdict"], busy["error_class"]) == (
        "busy",
        False,
        "throttled",
        "RateLimitedError",
    )
    assert (unset["verdict"], unset["error_class"]) == ("config_error", "ConfigFileError")
    assert "UNSET_TOKEN is not set" in unset["message"]
    assert isinstance(busy["seconds"], float)


def test_an_unknown_key_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key that names no source of the file lists the sources, exit 2."""
    assert main(["check", "nope", "--config", str(write_config(tmp_path, SAMPLE))]) == 2
    assert "no source 'nope'; the sources are demo" in capsys.readouterr().err


def test_a_quickbooks_check_keeps_the_token_its_refresh_rotated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refresh the check makes rotates the refresh token at Intuit; the new one is saved (the
    only write), so the next run is not locked out, and no database is created."""
    fake = FakeQuickBooks(rotate_refresh_tokens=True, refresh_token_grace=timedelta(0))
    fake.bulk_load(ENTITY, [datetime(2024, 6, 1, tzinfo=UTC)])
    grant = fake.grant_tokens()
    monkeypatch.setenv("QB_CLIENT_SECRET", fake.client_secret)
    monkeypatch.setenv("QB_REFRESH_TOKEN", grant.refresh_token)
    with fake.serve() as base_url:
        path = _quickbooks(tmp_path, base_url, fake)
        assert main(["check", "--config", str(path)]) == 0
        assert capsys.readouterr().out.startswith("qb: ok ")
        assert sorted(_files(tmp_path)) == ["state.db.tokens.json", "state.db.tokens.json.lock"]
        fake.expire_access_tokens()
        assert main(["run", "--config", str(path)]) == 0  # refreshes with the saved token
    out = capsys.readouterr().out
    assert out.startswith("qb: completed: 1 fetched, 1 applied"), out
    assert grant.refresh_token not in out


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (None, Verdict.OK),
        (ConfigurationError("bad setting"), Verdict.CONFIG_ERROR),
        (AuthError("401"), Verdict.CREDENTIALS_REJECTED),
        (RateLimitedError("429"), Verdict.THROTTLED),
        (TransientSourceError("could not connect"), Verdict.UNREACHABLE),
        (TransientSourceError("503", status_code=503), Verdict.SOURCE_ERROR),
        (PermanentSourceError("404", status_code=404), Verdict.SOURCE_ERROR),
        (BadResponseError("not JSON"), Verdict.SOURCE_ERROR),
        (KeyError("id"), Verdict.FAILED),
    ],
)
def test_each_error_class_has_its_verdict(error: Exception | None, verdict: Verdict) -> None:
    """The verdict follows from the exception's class (and whether an answer came) alone."""
    assert verdict_of(error) is verdict
