"""``incsync remap`` and ``incsync transactions``: a source's mapping named in the config file,
its stored records re-mapped without the source, its transactions exported as CSV or JSON Lines."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from incsync.integrations.cli import main
from incsync.mapping import preset
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.timestamps import UTC
from tests.cli.support import write_config

UNLIMITED = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)
PROPERTIES = '["dealname", "amount", "closedate", "dealstage", "hubspot_owner_id"]'


def config(directory: Path, base_url: str, mapping: str | None) -> Path:
    line = "" if mapping is None else f'mapping = "{mapping}"\n'
    return write_config(
        directory,
        f'[sources.hub]\ntype = "hubspot"\ntoken_env = "HUBSPOT_TOKEN"\nbase_url = "{base_url}"\n'
        f"properties = {PROPERTIES}\n{line}",
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def synced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Six HubSpot deals synced over loopback into SQLite, with no mapping yet; the config path."""
    fake = FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED)
    monkeypatch.setenv("HUBSPOT_TOKEN", fake.private_app_token)
    start = datetime(2024, 9, 1, tzinfo=UTC)
    for number in range(6):
        fake.create(
            "deals",
            {
                "dealname": f"Deal {number}\x1b[2J",
                "amount": f"{number}00.10",
                "closedate": f"2024-09-{number + 1:02d}T12:00:00Z",
                "dealstage": "closedwon" if number % 2 else "closedlost",
                "hubspot_owner_id": "77",
            },
            modified_at=start + timedelta(minutes=number),
        )
    with fake.serve() as base_url:
        path = config(tmp_path, base_url, None)
        assert run(capsys, "run", "--once", "--config", str(path))[0] == 0
    config(tmp_path, base_url, "hubspot/deals")
    return path


def test_remap_maps_what_the_store_holds_without_calling_the_source(
    synced: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fake is gone: adding a mapping and re-mapping reads only the stored payloads."""
    code, out, _ = run(capsys, "remap", "hub", "--config", str(synced))
    assert code == 0
    version = preset("hubspot", "deals").version
    assert out == (
        f"hub: re-mapped with hubspot/deals (version {version}): 6 rows written, 0 rows made "
        "void, 0 records cannot be mapped\n"
    )
    code, out, _ = run(capsys, "remap", "hub", "--config", str(synced), "--json")
    assert (code, json.loads(out)["written"], json.loads(out)["pages"]) == (0, 0, 0)


def test_transactions_export_csv_and_json_lines_by_business_date(
    synced: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "remap", "hub", "--config", str(synced))[0] == 0
    code, out, _ = run(
        capsys, "transactions", "hub", "--config", str(synced),
        "--since", "2024-09-02", "--until", "2024-09-05",
    )  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["business_date"] for row in rows] == ["2024-09-02", "2024-09-03", "2024-09-04"]
    assert [row["amount"] for row in rows] == ["100.10", "200.10", "300.10"]
    assert [row["status"] for row in rows] == ["won", "lost", "won"]
    assert rows[0]["owner_id"] == "77"
    assert rows[0]["voided"] == "False"
    assert "\x1b" not in out  # a vendor's escape sequence never reaches the terminal
    code, out, _ = run(capsys, "transactions", "hub", "--config", str(synced), "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 6
    assert lines[0]["custom"]["dealname"] == "Deal 0\x1b[2J"  # kept exactly, escaped as JSON
    assert out.isascii()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2024-09-31"], "is not a date like 2026-11-01"),
        (["--since", "2024-09-05", "--until", "2024-09-01"], "is before since"),
    ],
)
def test_transactions_refuses_a_bad_range(
    synced: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(capsys, "transactions", "hub", "--config", str(synced), *args)
    assert code == 2
    assert message in err


def test_a_source_without_a_mapping_or_with_an_unknown_preset_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, "http://127.0.0.1:9", None)
    code, _, err = run(capsys, "remap", "hub", "--config", str(path))
    assert code == 2
    assert "sources.hub.mapping: missing; name the mapping preset" in err
    config(tmp_path, "http://127.0.0.1:9", "hubspot/contacts")
    code, _, err = run(capsys, "remap", "hub", "--config", str(path))
    assert code == 2
    assert "sources.hub.mapping: no mapping preset for hubspot/contacts; known:" in err
