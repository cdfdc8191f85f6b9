"""The token file: rotated QuickBooks tokens survive between runs, and are written nowhere else."""

from __future__ import annotations

import json
import stat
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from incsync.errors import ConfigurationError, SourceError
from incsync.integrations.cli import main
from incsync.integrations.cli._tokens import TOKENS_SCHEMA, NotedKeeper, TokenFile
from incsync.stores.sqlite import SQLiteStore
from incsync.testing.fakes.quickbooks import FakeQuickBooks
from incsync.testing.fakes.xero import FakeXero
from incsync.timestamps import UTC
from incsync.tokens import StoredTokens
from tests.cli.support import incsync, write_config

EXPIRES = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _tokens(n: int) -> StoredTokens:
    return StoredTokens(f"refresh-{n}", f"access-{n}", EXPIRES)


def test_a_saved_source_is_loaded_back_and_the_others_are_kept(tmp_path: Path) -> None:
    """Each save replaces one source's entry; the file is JSON of its own schema, mode 0600."""
    path = tmp_path / "dir" / "tokens.json"
    saved: list[str] = []
    tokens = TokenFile(path)
    assert tokens.load("qb") is None  # no file yet
    NotedKeeper(tokens.keeper("qb"), saved.append).save(_tokens(1))
    NotedKeeper(tokens.keeper("xero"), saved.append).save(_tokens(2))
    NotedKeeper(tokens.keeper("qb"), saved.append).save(_tokens(3))
    assert tokens.load("qb") == StoredTokens("refresh-3", "access-3", EXPIRES)
    assert tokens.load("xero") == StoredTokens("refresh-2", "access-2", EXPIRES)
    assert TokenFile(path).load("other") is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["schema"] == TOKENS_SCHEMA
    assert sorted(document["sources"]) == ["qb", "xero"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]
    assert saved == ["refresh-1", "access-1", "refresh-2", "access-2", "refresh-3", "access-3"]
    assert NotedKeeper(tokens.keeper("qb"), saved.append).load() == _tokens(3)
    assert saved[-2:] == ["refresh-3", "access-3"]
    assert sorted(tokens.values()) == ["access-2", "access-3", "refresh-2", "refresh-3"]


def test_an_access_token_without_expiry_is_not_reused(tmp_path: Path) -> None:
    """Without a known expiry the access token is dropped: the refresh token renews it."""
    tokens = TokenFile(tmp_path / "tokens.json")
    tokens.save("qb", StoredTokens("refresh", "access"))
    assert tokens.load("qb") == StoredTokens("refresh")


def test_concurrent_saves_from_many_threads_lose_no_source(tmp_path: Path) -> None:
    """Workers of one process saving at once each leave their entry (read-modify-write locked)."""
    tokens = TokenFile(tmp_path / "tokens.json")
    threads = [
        threading.Thread(target=tokens.save, args=(f"source-{n}", _tokens(n))) for n in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(tokens.load(f"source-{n}") is not None for n in range(16))


def test_a_file_that_is_not_a_token_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A foreign file is never overwritten nor quoted (it may hold secrets)."""
    path = tmp_path / "tokens.json"
    path.write_text('{"refresh": "SENTINEL-refresh"}', encoding="utf-8")
    tokens = TokenFile(path)
    with pytest.raises(ConfigurationError, match="not a token file of incsync") as caught:
        tokens.load("qb")
    assert "SENTINEL" not in str(caught.value)
    with pytest.raises(SourceError, match="could not be saved") as failed:
        tokens.save("qb", _tokens(1))
    assert "SENTINEL" not in str(failed.value)
    assert path.read_text(encoding="utf-8") == '{"refresh": "SENTINEL-refresh"}'
    assert tokens.values() == []


ENTITY = "Invoice"


def _quickbooks(directory: Path, base_url: str, fake: FakeQuickBooks) -> Path:
    return write_config(
        directory,
        f'[sources.qb]\ntype = "quickbooks"\nrealm_id = "{fake.realm_id}"\n'
        f'entity = "{ENTITY}"\nclient_id = "{fake.client_id}"\n'
        'client_secret_env = "QB_CLIENT_SECRET"\nrefresh_token_env = "QB_REFRESH_TOKEN"\n'
        f'base_url = "{base_url}"\ntoken_url = "{base_url}/oauth2/v1/tokens/bearer"\n',
    )


def _held(database: Path) -> dict[str, dict[str, object]]:
    with SQLiteStore(database) as store:
        return {t.record.id: dict(t.record.payload) for t in store.transactions("qb")}


def _truth(fake: FakeQuickBooks) -> dict[str, dict[str, object]]:
    return {str(record["Id"]): record for record in fake.entities(ENTITY)}


def _file_tokens(path: Path) -> set[str]:
    entry = json.loads(path.read_text(encoding="utf-8"))["sources"]["qb"]
    return {entry["refresh_token"], entry["access_token"]}


def test_separate_runs_keep_working_while_quickbooks_rotates_the_refresh_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four separate runs (three in-process, one a subprocess) all succeed against a company that
    rotates its refresh token at every refresh and refuses the old one at once, because each run
    saves the new token and the next one starts from it. The initial grant (the environment
    variable) is dead after the first run. No token ever reaches stdout, stderr or the database.
    """
    fake = FakeQuickBooks(rotate_refresh_tokens=True, refresh_token_grace=timedelta(0))
    start = datetime(2024, 6, 1, tzinfo=UTC)
    fake.bulk_load(ENTITY, [start + timedelta(minutes=n) for n in range(30)])
    grant = fake.grant_tokens()
    env = {"QB_CLIENT_SECRET": fake.client_secret, "QB_REFRESH_TOKEN": grant.refresh_token}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    token_file = tmp_path / "state.db.tokens.json"
    seen = {grant.refresh_token, grant.access_token, fake.client_secret}
    printed = ""
    with fake.serve() as base_url:
        path = _quickbooks(tmp_path, base_url, fake)
        for run in range(3):
            if run:
                fake.add(ENTITY, {"DocNumber": f"run-{run}"}, updated_at=start + timedelta(days=1))
                # The saved access token is refused: this run must refresh, and so rotate.
                fake.expire_access_tokens()
            args = ["run", "-v", "--config", str(path)] + (["--all"] if run else [])
            assert main(args) == 0
            out, err = capsys.readouterr()
            assert out.startswith("qb: completed: "), err
            printed += out + err
            assert _held(tmp_path / "state.db") == _truth(fake)
            current = _file_tokens(token_file)
            assert not current & seen, "every run rotated the tokens"
            seen |= current
        fake.add(ENTITY, {"DocNumber": "subprocess"}, updated_at=start + timedelta(days=2))
        fake.expire_access_tokens()
        done = incsync("run", "-v", "--all", "--config", str(path), cwd=tmp_path, env=env)
        assert done.code == 0, done.stderr
        assert done.stdout.startswith("qb: completed: ")
        assert ", 1 applied, " in done.stdout
        printed += done.stdout + done.stderr
        seen |= _file_tokens(token_file)
        assert _held(tmp_path / "state.db") == _truth(fake)
        assert len(_truth(fake)) == 33

        # Without the file, the environment's grant is all there is, and it was rotated away.
        token_file.unlink()
        fake.expire_access_tokens()
        assert main(["run", "--all", "--config", str(path)]) == 1
        out, err = capsys.readouterr()
        assert "error: AuthError: " in out
        printed += out + err
    assert "cycle completed" in printed  # the verbose log was captured, and is checked too
    database = b"".join(
        p.read_bytes() for p in [tmp_path / "state.db", *tmp_path.glob("state.db-*")]
    )
    for token in seen:
        assert token not in printed
        assert token.encode() not in database


def test_a_xero_source_also_keeps_its_rotated_token_between_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Xero spends a refresh token on use: a second run succeeds only from the saved one."""
    fake = FakeXero()
    fake.bulk_load([datetime(2024, 6, 1, tzinfo=UTC) + timedelta(hours=n) for n in range(5)])
    grant = fake.grant_tokens()
    monkeypatch.setenv("XERO_CLIENT_SECRET", fake.client_secret)
    monkeypatch.setenv("XERO_REFRESH_TOKEN", grant.refresh_token)
    with fake.serve() as base_url:
        path = write_config(
            tmp_path,
            f'[sources.xero]\ntype = "xero"\ntenant_id = "{fake.tenant_id}"\n'
            f'client_id = "{fake.client_id}"\nclient_secret_env = "XERO_CLIENT_SECRET"\n'
            'refresh_token_env = "XERO_REFRESH_TOKEN"\n'
            f'base_url = "{base_url}/api.xro/2.0"\ntoken_url = "{base_url}/connect/token"\n',
        )
        for _ in range(2):
            fake.expire_access_tokens()
            assert main(["run", "--all", "--config", str(path)]) == 0
            out, err = capsys.readouterr()
            assert out.startswith("xero: completed: "), out + err
            assert grant.refresh_token not in out + err
    with SQLiteStore(tmp_path / "state.db") as store:
        held = {t.record.id for t in store.transactions("xero")}
    assert held == set(fake.ground_truth())
    saved = TokenFile(tmp_path / "state.db.tokens.json").load("xero")
    assert saved is not None
    assert saved.refresh_token != grant.refresh_token
