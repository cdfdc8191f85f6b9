"""A rotated refresh token is never lost: checked before the refresh, saved before its use.

Every test runs the real command against a QuickBooks fake served on loopback that spends a
refresh token as Intuit does, and proves a *following* run still syncs: after a read-only token
file or directory (no refresh is sent), with the tokens in the state store (encrypted), and after
the process is killed with SIGKILL at the two moments a refresh can be cut: after the vendor
rotated but before the answer was saved, and after the save but before its access token was used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from incsync.integrations.cli import main
from incsync.stores.sqlite import SQLiteStore
from incsync.testing.fakes.quickbooks import FakeQuickBooks
from incsync.timestamps import UTC
from incsync.tokens import TOKEN_KEY_ENV, StoreTokenKeeper, TokenCipher
from tests.cli.support import SCRIPT, Completed, incsync, write_config
from tests.helpers import unwritable

ENTITY = "Invoice"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"


def _fake(grace: timedelta = timedelta(0)) -> FakeQuickBooks:
    fake = FakeQuickBooks(refresh_token_grace=grace)
    start = datetime(2024, 6, 1, tzinfo=UTC)
    fake.bulk_load(ENTITY, [start + timedelta(minutes=n) for n in range(12)])
    return fake


def _config(directory: Path, base_url: str, fake: FakeQuickBooks, tokens: str = "") -> Path:
    """Write the config; ``tokens`` is its top-level line naming where tokens are kept."""
    path = write_config(
        directory,
        f'[sources.qb]\ntype = "quickbooks"\nrealm_id = "{fake.realm_id}"\n'
        f'entity = "{ENTITY}"\nclient_id = "{fake.client_id}"\n'
        'client_secret_env = "QB_CLIENT_SECRET"\nrefresh_token_env = "QB_REFRESH_TOKEN"\n'
        f'base_url = "{base_url}"\ntoken_url = "{base_url}{TOKEN_PATH}"\n',
    )
    path.write_text(tokens + path.read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture
def env() -> dict[str, str]:
    """The variables of a first grant (see _grant), for the subprocesses' environment."""
    return {}


def _grant(fake: FakeQuickBooks, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    env |= {
        "QB_CLIENT_SECRET": fake.client_secret,
        "QB_REFRESH_TOKEN": fake.grant_tokens().refresh_token,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _token_requests(fake: FakeQuickBooks) -> int:
    return sum(httpx.URL(request.url).path == TOKEN_PATH for request in fake.requests)


def _held(database: Path) -> int:
    with SQLiteStore(database) as store:
        return store.count_transactions("qb")


@pytest.mark.parametrize("place", ["file", "directory"])
def test_a_read_only_token_location_sends_no_refresh_and_the_next_run_works(
    place: str,
    tmp_path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the token file or its directory unwritable, the cycle fails naming the file before
    any refresh request reaches QuickBooks (so the saved refresh token stays the valid one);
    once writable again, the next run refreshes with it and syncs."""
    fake = _fake()
    _grant(fake, env, monkeypatch)
    with fake.serve() as base_url:
        config = _config(tmp_path, base_url, fake, 'tokens = "keep/tokens.json"\n')
        assert main(["run", "--config", str(config)]) == 0
        capsys.readouterr()
        token_file = tmp_path / "keep" / "tokens.json"
        saved = token_file.read_text(encoding="utf-8")
        fake.expire_access_tokens()
        refreshes = _token_requests(fake)
        with unwritable(token_file if place == "file" else token_file.parent):
            assert main(["run", "--all", "--config", str(config)]) == 1
            out, err = capsys.readouterr()
        assert _token_requests(fake) == refreshes, "no refresh may be sent"
        assert f"the token file {token_file} cannot be written" in out, out + err
        assert "no refresh was asked for" in out
        assert "SENTINEL" not in out + err
        assert token_file.read_text(encoding="utf-8") == saved
        fake.add(ENTITY, {"DocNumber": "after"}, updated_at=datetime(2024, 6, 2, tzinfo=UTC))
        assert main(["run", "--all", "--config", str(config)]) == 0
        out, _ = capsys.readouterr()
        assert out.startswith("qb: completed: "), out
        assert ", 1 applied, " in out
        assert token_file.read_text(encoding="utf-8") != saved
    assert _held(tmp_path / "state.db") == 13


def test_tokens_kept_encrypted_in_the_state_store_survive_rotation_between_runs(
    tmp_path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """tokens = "store": three runs refresh and rotate; each saves the row it needs next, which is
    ciphertext in the database. A wrong key is one line naming the variable, before anything."""
    fake = _fake()
    _grant(fake, env, monkeypatch)
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(TOKEN_KEY_ENV, key)
    seen = {env["QB_REFRESH_TOKEN"]}
    with fake.serve() as base_url:
        config = _config(tmp_path, base_url, fake, 'tokens = "store"\n')
        for _ in range(3):
            fake.expire_access_tokens()
            assert main(["run", "--all", "--config", str(config)]) == 0, capsys.readouterr()
            with SQLiteStore(tmp_path / "state.db") as store:
                sealed = store.load_tokens("qb")
                kept = StoreTokenKeeper(store, "qb", cipher=TokenCipher([key])).load()
            assert sealed is not None
            assert sealed.encrypted
            assert kept is not None
            assert kept.refresh_token not in seen, "every run rotated the refresh token"
            seen |= {kept.refresh_token, kept.access_token or ""}
            assert kept.refresh_token not in sealed.text
        capsys.readouterr()
        monkeypatch.setenv(TOKEN_KEY_ENV, Fernet.generate_key().decode())
        refreshes = _token_requests(fake)
        assert main(["run", "--all", "--config", str(config)]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(f"incsync: error: {config}: tokens: the tokens of source 'qb'")
        assert f"set {TOKEN_KEY_ENV} to the key they were saved with" in err
        assert err.count("\n") == 1
        assert _token_requests(fake) == refreshes
        monkeypatch.setenv(TOKEN_KEY_ENV, "not-a-fernet-key")
        assert main(["run", "--all", "--config", str(config)]) == 2
        out, err = capsys.readouterr()
        assert err == (
            f"incsync: error: {config}: tokens: key 1 of {TOKEN_KEY_ENV} is not a Fernet key (32 "
            "url-safe base64-encoded bytes); make one with: python -c 'from cryptography.fernet "
            "import Fernet; print(Fernet.generate_key().decode())'\n"
        )
    assert not list(tmp_path.glob("*.tokens.json"))
    database = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    for token in seen - {""}:
        assert token.encode() not in database


class HeldAnswer:
    """Holds the first answer to requests on ``path`` after the fake made it, until released.

    The fake has done its work (a refresh has rotated the token) by the time ``answered`` is set;
    the client has not received a byte of the answer. Killing the client then cuts it exactly
    there.
    """

    def __init__(self, fake: FakeQuickBooks, path: str) -> None:
        self.answered = threading.Event()
        self.release = threading.Event()
        self._fake = fake
        self._path = path

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        if self.answered.is_set() or not request.url.path.endswith(self._path):
            return None
        response = self._fake.handle(request)
        self.answered.set()
        self.release.wait(timeout=60)
        return response


def _killed_mid_run(
    fake: FakeQuickBooks, held: HeldAnswer, config: Path, env: dict[str, str]
) -> None:
    fake.add_fault(held)
    process = subprocess.Popen(
        [str(SCRIPT), "run", "--config", str(config)],
        cwd=config.parent,
        env={**_environment(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert held.answered.wait(timeout=60), "the run never reached the held answer"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        process.kill()
        process.communicate()
        held.release.set()
        fake.clear_faults()


def _next_run(config: Path, env: dict[str, str]) -> Completed:
    """Release the killed run's lease (its process is gone), then run every source."""
    unlocked = incsync(
        "unlock", "--force", "--config", str(config), "qb", cwd=config.parent, env=env
    )
    assert unlocked.code == 0, unlocked.stdout + unlocked.stderr
    return incsync("run", "--all", "--config", str(config), cwd=config.parent, env=env)


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("INCSYNC_CONFIG", TOKEN_KEY_ENV)}


@pytest.mark.slow
@pytest.mark.parametrize("tokens", ["", 'tokens = "store"\n'])
def test_killed_after_the_save_before_the_new_token_is_used_the_next_run_syncs(
    tokens: str, tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL while the first API request after a refresh is out: the rotated tokens were saved
    before that request, so the next process refreshes with them although QuickBooks refuses the
    previous refresh token at once (no grace)."""
    fake = _fake(grace=timedelta(0))
    _grant(fake, env, monkeypatch)
    with fake.serve() as base_url:
        config = _config(tmp_path, base_url, fake, tokens)
        _killed_mid_run(fake, HeldAnswer(fake, "/query"), config, env)
        assert _token_requests(fake) == 1
        fake.expire_access_tokens()
        done = _next_run(config, env)
        assert done.code == 0, done.stdout + done.stderr
        # Read in partitions: the last one's last record is read twice (once already applied).
        assert done.stdout.startswith("qb: completed: ")
        assert ", 12 applied" in done.stdout
        assert _token_requests(fake) == 2
        assert all(request.status != 400 for request in fake.requests)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("grace", "code"), [(timedelta(hours=24), 0), (timedelta(0), 1)], ids=["intuit", "no-grace"]
)
def test_killed_after_the_vendor_rotated_before_the_save_the_kept_token_is_the_old_one(
    grace: timedelta,
    code: int,
    tmp_path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL after QuickBooks rotated but before the answer reached the process: nothing was
    saved, so the next run presents the previous refresh token. QuickBooks accepts it for 24
    hours after rotating it, and the run syncs; a vendor that refused it at once would leave
    only re-authorisation, which the next run says."""
    fake = _fake(grace=grace)
    _grant(fake, env, monkeypatch)
    with fake.serve() as base_url:
        config = _config(tmp_path, base_url, fake)
        _killed_mid_run(fake, HeldAnswer(fake, TOKEN_PATH), config, env)
        assert not (tmp_path / "state.db.tokens.json").exists()
        done = _next_run(config, env)
    assert done.code == code, done.stdout + done.stderr
    if code == 0:
        assert done.stdout.startswith("qb: completed: ")
        assert ", 12 applied" in done.stdout
        saved = json.loads((tmp_path / "state.db.tokens.json").read_text(encoding="utf-8"))
        assert saved["sources"]["qb"]["refresh_token"] != env["QB_REFRESH_TOKEN"]
    else:
        assert "error: AuthError: the OAuth2 token refresh was refused" in done.stdout
        assert "re-authorise" in done.stdout
