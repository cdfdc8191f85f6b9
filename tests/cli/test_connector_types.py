"""Every connector type a config file can name, the REST type's own language, and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from incsync.connectors.memory import InMemoryConnector
from incsync.connectors.rest import RestConnector
from incsync.integrations.cli import main
from incsync.integrations.cli._config import ConfigFileError, load_config
from incsync.integrations.cli._connectors import CONNECTOR_TYPES
from incsync.integrations.cli._secrets import build_connector
from incsync.testing import ManualClock
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.timestamps import UTC, utc_now
from incsync.vendors.hubspot import HubSpotConnector
from incsync.vendors.pipedrive import PipedriveConnector
from incsync.vendors.quickbooks import QuickBooksConnector
from incsync.vendors.salesforce import SalesforceConnector
from incsync.vendors.stripe import StripeConnector
from incsync.vendors.xero import XeroConnector
from tests.cli.support import SAMPLE, incsync, write_config
from tests.stores.postgres_server import fresh_schema, require_server

SECRET = "sk_test_SENTINEL-4c1d-never-shown"

REST = """
[sources.api]
type = "rest"
base_url = "{base_url}"
path = "/v1/items"
ordered = true
params = {{ include_deleted = true }}
filter = {{ param = "updated_since", format = "iso8601" }}
records = {{ path = "data.items", id = "id", updated_at = "meta.updated_at" }}
tombstone = {{ field = "status", values = ["deleted"] }}
auth = {{ kind = "bearer", secret = "API_TOKEN" }}
paging = {{ style = "offset", size = 50 }}
"""

# type: (settings beyond `type`, the connector class)
MINIMAL: dict[str, tuple[str, type]] = {
    "sample": ("", InMemoryConnector),
    "hubspot": ('token_env = "S"', HubSpotConnector),
    "quickbooks": (
        'realm_id = "123"\nentity = "Invoice"\nclient_id = "app"\n'
        'client_secret_env = "S"\nrefresh_token_env = "S"',
        QuickBooksConnector,
    ),
    "salesforce": (
        'client_id = "app"\nclient_secret_env = "S"\nrefresh_token_env = "S"',
        SalesforceConnector,
    ),
    "xero": (
        'tenant_id = "t-1"\nclient_id = "app"\nclient_secret_env = "S"\nrefresh_token_env = "S"',
        XeroConnector,
    ),
    "stripe": ('secret_key_env = "S"', StripeConnector),
    "pipedrive": ('api_token_env = "S"', PipedriveConnector),
    "rest": (REST.split("\n", 3)[3].format(base_url="https://api.example.com"), RestConnector),
}


def test_every_registered_type_has_a_minimal_example_here() -> None:
    """A new type in the registry must be added to this table (and so be tested)."""
    assert set(MINIMAL) == set(CONNECTOR_TYPES)


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_each_type_builds_its_connector_from_file_and_environment(
    name: str, tmp_path: Path
) -> None:
    """A minimal source of each type, its secrets in the environment, builds its connector."""
    settings, expected = MINIMAL[name]
    path = write_config(tmp_path, f'[sources.s]\ntype = "{name}"\n{settings}\n')
    config = load_config(path)
    connector = build_connector(config, config.sources[0], {"S": SECRET, "API_TOKEN": SECRET})
    try:
        assert isinstance(connector, expected)
        assert SECRET not in repr(connector)
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()


SECRET_SETTINGS = [
    (type_name, setting)
    for type_name, connector_type in sorted(CONNECTOR_TYPES.items())
    for setting, spec in connector_type.settings.items()
    if spec.secret
]


@pytest.mark.parametrize(("type_name", "setting"), SECRET_SETTINGS)
def test_no_secret_setting_accepts_a_literal_value(
    type_name: str, setting: str, tmp_path: Path
) -> None:
    """Every secret of every type must be named by an environment variable, never written."""
    path = write_config(tmp_path, f'[sources.s]\ntype = "{type_name}"\n{setting} = "{SECRET}"\n')
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert caught.value.key == f"sources.s.{setting}"
    assert f'{setting}_env = "VARIABLE"' in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_rest_source_s_own_errors_are_named_under_the_source(tmp_path: Path) -> None:
    """The rest type's nested keys are named in full: sources.<key>.<its dotted key>."""
    body = REST.format(base_url="https://api.example.com").replace('format = "iso8601"', "")
    path = write_config(tmp_path, body.replace('{ param = "updated_since",  }', "{}"))
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert caught.value.key == "sources.api.filter.param"
    assert str(caught.value).startswith(f"{path}: sources.api.filter.param: ")


def test_a_rest_source_syncs_over_loopback_and_lists_what_it_set_aside(tmp_path: Path) -> None:
    """A REST API is read through the rest type; its malformed item is listed by `rejected`.

    The API token, read from the environment, appears in no output and not in the database.
    """
    # The fake's clock reads the host's (the command runs on the real one), as a vendor's would:
    # no skew to name in the status.
    fake = FakeGenericRest(paging="offset", token=SECRET, clock=ManualClock(utc_now()))
    fake.load(120, datetime(2024, 5, 1, tzinfo=UTC))
    fake.add_malformed({"id": "broken-1", "meta": {}}, datetime(2024, 5, 2, tzinfo=UTC))
    with fake.serve() as base_url:
        path = write_config(tmp_path, REST.format(base_url=base_url))
        done = incsync("run", "-v", "--config", str(path), cwd=tmp_path, env={"API_TOKEN": SECRET})
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("api: completed: 121 fetched, 120 applied, 0 already applied, 1 ")

    listed = incsync("rejected", "api", "--json", "--config", str(path), cwd=tmp_path)
    assert listed.code == 0
    rejected = json.loads(listed.stdout)["rejected"]
    assert [entry["record_id"] for entry in rejected] == ["broken-1"]
    assert "updated_at" in rejected[0]["reason"]

    status = json.loads(incsync("status", "--json", "-c", str(path), cwd=tmp_path).stdout)
    assert status["sources"][0]["notes"] == ["records_set_aside"]
    everything = done.stdout + done.stderr + listed.stdout + json.dumps(status)
    assert SECRET not in everything
    database = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert SECRET.encode() not in database


# The config's sample source reads as one window, as a user's does: exact counts and pages.
@pytest.mark.one_reader
def test_a_postgres_store_is_used_when_the_config_names_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kind = "postgres" keeps state in the server's schema (created on first use)."""
    conninfo = require_server()
    monkeypatch.setenv("INCSYNC_DATABASE_URL", conninfo)
    with fresh_schema() as schema:
        store = f'kind = "postgres"\nconninfo_env = "INCSYNC_DATABASE_URL"\nschema = "{schema}"'
        path = write_config(tmp_path, SAMPLE, store=store)
        assert main(["run", "--config", str(path)]) == 0
        assert capsys.readouterr().out.startswith("demo: completed: 1,200 fetched, 1,200 applied")
        assert main(["status", "--json", "--config", str(path)]) == 0
        source = json.loads(capsys.readouterr().out)["sources"][0]
        assert (source["key"], source["phase"]) == ("demo", "active")
    assert not list(tmp_path.glob("*.db"))


def test_a_postgres_store_without_its_variable_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection string's variable must be set; the error names the key."""
    monkeypatch.delenv("INCSYNC_DATABASE_URL", raising=False)
    store = 'kind = "postgres"\nconninfo_env = "INCSYNC_DATABASE_URL"'
    path = write_config(tmp_path, SAMPLE, store=store)
    assert main(["status", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"incsync: error: {path}: store.conninfo_env: "
        "environment variable INCSYNC_DATABASE_URL is not set\n"
    )
