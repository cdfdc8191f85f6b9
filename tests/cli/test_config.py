"""The config file: every mistake is one message naming the file and the key, and exits 2."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import pytest

from incsync.integrations.cli import main
from incsync.integrations.cli._config import ConfigFileError, load_config
from incsync.integrations.cli._parser import parse_interval
from incsync.integrations.cli._secrets import build_connector
from tests.cli.support import SAMPLE, write_config

SECRET = "pat-na1-0c7e-SENTINEL-never-shown"

HUBSPOT = '[sources.hub]\ntype = "hubspot"\n'

# (case, store table, sources, key at fault, words the message must contain)
CASES = [
    ("no store table", None, SAMPLE, "store", "missing"),
    ("no sqlite path", 'kind = "sqlite"', SAMPLE, "store.path", "missing"),
    ("sqlite path not text", "path = 3", SAMPLE, "store.path", "must be a string"),
    ("unknown store kind", 'kind = "mysql"', SAMPLE, "store.kind", "one of sqlite, postgres"),
    (
        "literal connection string",
        f'kind = "postgres"\nconninfo = "postgresql://app:{SECRET}@db/app"',
        SAMPLE,
        "store.conninfo",
        "conninfo_env",
    ),
    ("conninfo_env missing", 'kind = "postgres"', SAMPLE, "store.conninfo_env", "must be a string"),
    ("unknown store setting", 'path = "x.db"\ncolour = "red"', SAMPLE, "store.colour", "unknown"),
    ("no sources", 'path = "x.db"', "", "sources", "no source defined"),
    ("source not a table", 'path = "x.db"', "[sources]\ndemo = 3\n", "sources.demo", "table"),
    ("type missing", 'path = "x.db"', "[sources.demo]\ncount = 3\n", "sources.demo.type", "sample"),
    (
        "unknown type",
        'path = "x.db"',
        '[sources.demo]\ntype = "oracle"\n',
        "sources.demo.type",
        "unknown connector type",
    ),
    (
        "literal token",
        'path = "x.db"',
        f'{HUBSPOT}token = "{SECRET}"\n',
        "sources.hub.token",
        "token_env",
    ),
    (
        "token_env missing",
        'path = "x.db"',
        HUBSPOT,
        "sources.hub.token_env",
        "environment variable",
    ),
    (
        "token pasted as a variable name",
        'path = "x.db"',
        f'{HUBSPOT}token_env = "{SECRET}"\n',
        "sources.hub.token_env",
        "not the secret itself",
    ),
    (
        "list expected",
        'path = "x.db"',
        f'{HUBSPOT}token_env = "T"\nproperties = "dealname"\n',
        "sources.hub.properties",
        "a list of strings",
    ),
    (
        "integer expected",
        'path = "x.db"',
        '[sources.demo]\ntype = "sample"\ncount = "many"\n',
        "sources.demo.count",
        "must be an integer, got a string",
    ),
    (
        "boolean is no integer",
        'path = "x.db"',
        '[sources.demo]\ntype = "sample"\ncount = true\n',
        "sources.demo.count",
        "got a boolean",
    ),
    (
        "local date-time",
        'path = "x.db"',
        '[sources.demo]\ntype = "sample"\nend = 2026-01-01T00:00:00\n',
        "sources.demo.end",
        "UTC offset",
    ),
    (
        "unknown setting",
        'path = "x.db"',
        '[sources.demo]\ntype = "sample"\ncolour = "red"\n',
        "sources.demo.colour",
        "accepted: type, interval, account, mapping, count, end",
    ),
    (
        "required setting missing",
        'path = "x.db"',
        '[sources.qb]\ntype = "quickbooks"\nentity = "Invoice"\n',
        "sources.qb.realm_id",
        "missing",
    ),
    (
        "quoted source key",
        'path = "x.db"',
        '[sources."acme/invoices"]\ncount = 1\n',
        'sources."acme/invoices".type',
        "missing",
    ),
    ("unknown top-level key", 'path = "x.db"', "[source.demo]\n", "source", "unknown key"),
    (
        "source interval not an interval",
        'path = "x.db"',
        SAMPLE + 'interval = "soon"\n',
        "sources.demo.interval",
        "is not an interval; write it like 1h",
    ),
    (
        "source interval not text",
        'path = "x.db"',
        SAMPLE + "interval = 3600\n",
        "sources.demo.interval",
        'must be a string like "1h"',
    ),
    ("account empty", 'path = "x.db"', SAMPLE + 'account = " "\n', "sources.demo.account", "empty"),
    (
        "run interval zero",
        'path = "x.db"',
        '[run]\ninterval = "0s"\n' + SAMPLE,
        "run.interval",
        "zero",
    ),
    (
        "run workers zero",
        'path = "x.db"',
        "[run]\nworkers = 0\n" + SAMPLE,
        "run.workers",
        "at least 1",
    ),
    (
        "run limit not a number",
        'path = "x.db"',
        '[run]\nper_account_limit = "2"\n' + SAMPLE,
        "run.per_account_limit",
        "at least 1",
    ),
    (
        "unknown run setting",
        'path = "x.db"',
        "[run]\nthreads = 2\n" + SAMPLE,
        "run.threads",
        "accepted: interval, workers, per_account_limit",
    ),
    ("tokens not text", None, 'tokens = 3\n[store]\npath = "x.db"\n' + SAMPLE, "tokens", "path"),
]


@pytest.mark.parametrize(
    ("store", "sources", "key", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_mistake_names_the_file_and_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    store: str | None,
    sources: str,
    key: str,
    words: str,
) -> None:
    """load_config raises one ConfigFileError for the key; the command prints it and exits 2.

    No message repeats a value from the file, since it may be a secret.
    """
    path = tmp_path / "sources.toml"
    path.write_text(("" if store is None else f"[store]\n{store}\n\n") + sources, encoding="utf-8")
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert words in str(caught.value)
    assert SECRET not in str(caught.value)

    assert main(["status", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"incsync: error: {caught.value}\n"
    assert not (tmp_path / "x.db").exists()


def test_a_file_that_is_not_toml_is_named_with_the_parser_s_position(tmp_path: Path) -> None:
    """Broken TOML is reported with the file's name and the line the parser stopped at."""
    path = write_config(tmp_path, "[sources.demo\n")
    with pytest.raises(ConfigFileError, match=r"incsync\.toml: is not valid TOML: .*line 4"):
        load_config(path)


def test_a_missing_file_says_how_to_name_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the file the command exits 2 and says how to point at a config file."""
    assert main(["status", "--config", str(tmp_path / "nowhere.toml")]) == 2
    assert "nowhere.toml: no such file; pass --config FILE or set INCSYNC_CONFIG" in (
        capsys.readouterr().err
    )


def test_the_config_file_can_come_from_incsync_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """INCSYNC_CONFIG names the file when --config is not given."""
    monkeypatch.setenv("INCSYNC_CONFIG", str(write_config(tmp_path, SAMPLE)))
    assert main(["run"]) == 0  # the first run creates the database the status reads
    assert main(["status"]) == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "environment variable HUBSPOT_TOKEN is not set"),
        ({"HUBSPOT_TOKEN": ""}, "environment variable HUBSPOT_TOKEN is empty"),
    ],
)
def test_an_unset_secret_variable_is_named_with_its_key(
    tmp_path: Path, environ: dict[str, str], problem: str
) -> None:
    """A secret's variable is read only when a connector is built, and its absence is named."""
    path = write_config(tmp_path, f'{HUBSPOT}token_env = "HUBSPOT_TOKEN"\n')
    config = load_config(path)
    with pytest.raises(ConfigFileError) as caught:
        build_connector(config, config.sources[0], environ)
    assert str(caught.value) == f"{path}: sources.hub.token_env: {problem}"


def test_a_secret_pasted_as_a_variable_name_is_not_printed_back(tmp_path: Path) -> None:
    """A name that looks like a credential (long, mixed case and digits) is not echoed."""
    pasted = "xoxb17a9F3kQ2mZ8pL4tR6vW1yB5nC0"
    path = write_config(tmp_path, f'{HUBSPOT}token_env = "{pasted}"\n')
    config = load_config(path)
    with pytest.raises(ConfigFileError) as caught:
        build_connector(config, config.sources[0], {})
    assert caught.value.key == "sources.hub.token_env"
    assert "looks like a secret" in str(caught.value)
    assert pasted not in str(caught.value)


def test_run_stops_before_any_cycle_when_a_variable_is_unset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No source runs while another one's secret is missing: the command exits 2 at once."""
    monkeypatch.delenv("HUBSPOT_TOKEN", raising=False)
    path = write_config(tmp_path, f'{SAMPLE}\n{HUBSPOT}token_env = "HUBSPOT_TOKEN"\n')
    assert main(["run", "--once", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"incsync: error: {path}: sources.hub.token_env: "
        "environment variable HUBSPOT_TOKEN is not set\n"
    )


def test_a_setting_the_connector_refuses_is_named_with_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connector's own checks are reported under the source's key, with secrets masked."""
    monkeypatch.setenv("QB_SECRET", SECRET)
    monkeypatch.setenv("QB_REFRESH", SECRET + "-refresh")
    path = write_config(
        tmp_path,
        '[sources.qb]\ntype = "quickbooks"\nrealm_id = "12-34"\nentity = "Invoice"\n'
        'client_id = "app"\nclient_secret_env = "QB_SECRET"\nrefresh_token_env = "QB_REFRESH"\n',
    )
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"incsync: error: {path}: sources.qb: realm_id must be the company")
    assert SECRET not in err


def test_relative_store_paths_are_taken_from_the_config_file_s_directory(tmp_path: Path) -> None:
    """The SQLite path is relative to the config file, not to the working directory."""
    (tmp_path / "conf").mkdir()
    config = load_config(write_config(tmp_path / "conf", SAMPLE))
    assert config.store.path == tmp_path / "conf" / "state.db"


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("1h", timedelta(hours=1)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        (" 1D2H ", timedelta(days=1, hours=2)),
    ],
)
def test_intervals_are_read_with_units(text: str, interval: timedelta) -> None:
    """Intervals are whole numbers with d, h, m and s units, largest first."""
    assert parse_interval(text) == interval


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "30m1h", "0s", "-1h", "1.5h"])
def test_other_intervals_are_refused(text: str) -> None:
    """Anything else, or a zero interval, is a usage error."""
    with pytest.raises(argparse.ArgumentTypeError):
        parse_interval(text)


def test_a_bad_interval_exits_2_with_argparse_s_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """--every with a bad interval is a usage error (exit 2) that says how to write one."""
    assert main(["run", "--every", "soon"]) == 2
    assert "write it like 1h, 30m, 90s or 1h30m" in capsys.readouterr().err


def test_scheduling_settings_default_to_hourly_four_workers_one_per_account(tmp_path: Path) -> None:
    """Without [run], a source syncs hourly in its own account; four cycles run at once, one per
    account, and tokens live beside the database."""
    config = load_config(write_config(tmp_path, SAMPLE))
    assert (config.run.interval, config.run.workers, config.run.per_account_limit) == (
        timedelta(hours=1),
        4,
        1,
    )
    assert (config.sources[0].interval, config.sources[0].account) == (timedelta(hours=1), "demo")
    assert config.tokens == tmp_path / "state.db.tokens.json"


def test_scheduling_settings_are_read_from_run_and_each_source(tmp_path: Path) -> None:
    """[run] sets the default interval and the limits; a source may set its own interval and
    account; tokens is relative to the config file."""
    other = SAMPLE.replace("sources.demo", "sources.other") + 'interval = "15m"\naccount = "acme"\n'
    path = tmp_path / "incsync.toml"
    path.write_text(
        'tokens = "secret/tokens.json"\n[store]\npath = "state.db"\n'
        '[run]\ninterval = "30m"\nworkers = 2\nper_account_limit = 3\n' + SAMPLE + other,
        encoding="utf-8",
    )
    config = load_config(path)
    assert (config.run.interval, config.run.workers, config.run.per_account_limit) == (
        timedelta(minutes=30),
        2,
        3,
    )
    demo, second = config.sources
    assert (demo.interval, demo.account) == (timedelta(minutes=30), "demo")
    assert (second.interval, second.account) == (timedelta(minutes=15), "acme")
    assert config.tokens == tmp_path / "secret" / "tokens.json"


def test_a_postgres_config_keeps_its_tokens_beside_the_config_file(tmp_path: Path) -> None:
    """Without a database file, the token file is named after the config file."""
    store = 'kind = "postgres"\nconninfo_env = "INCSYNC_DATABASE_URL"'
    path = write_config(tmp_path, SAMPLE, store=store)
    assert load_config(path).tokens == tmp_path / "incsync.tokens.json"
