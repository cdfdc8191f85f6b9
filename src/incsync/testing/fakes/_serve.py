"""``python -m incsync.testing.fakes serve VENDOR``: one fake vendor API for a person to drive.

The fake runs on an HTTP port with a real clock and a seeded history (``--records``, spread over
the last 30 days). Once it listens, the command prints what pointing the ``incsync`` command at it
takes: the URL, the fake's credentials as ``export`` lines for the shell, and a config file to
save as ``incsync.toml``. It then serves until Ctrl-C or SIGTERM, and exits 0. The credentials
are the fake's own, made up at start: no real one is ever involved.

The fakes keep their vendor's rules (see :mod:`incsync.testing.fakes`), throttling included, on
the real clock: a sync against one waits out the vendor's rate limits as it would in production.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import FrameType
from typing import TextIO

import attrs

from incsync.testing import ManualClock
from incsync.testing.fakes._server import FakeVendor, RunningClock
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.testing.fakes.hubspot import FakeHubSpot
from incsync.testing.fakes.pipedrive import FakePipedrive
from incsync.testing.fakes.quickbooks import FakeQuickBooks
from incsync.testing.fakes.salesforce import FakeSalesforce
from incsync.testing.fakes.stripe import FakeStripe
from incsync.testing.fakes.xero import FakeXero

__all__ = [
    "VENDORS",
    "Served",
    "Settings",
    "hubspot_settings",
    "main",
    "quickbooks_settings",
    "source_table",
]

_HISTORY = timedelta(days=30)
_NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka")


Settings = Mapping[str, object]
"""A source's settings in a config file: text, numbers, booleans, lists, inline tables."""


def _toml(value: object) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{name} = {_toml(item)}" for name, item in value.items()) + " }"
    # JSON's strings, numbers, booleans and arrays of them are TOML's.
    return json.dumps(value)


def source_table(key: str, settings: Settings) -> list[str]:
    """Return the lines of a config file's table of the source ``key``.

    Args:
        key: The source's key (quoted, so any key is one).
        settings: Its settings, ``type`` first.
    """
    return [f"[sources.{json.dumps(key)}]", *(f"{k} = {_toml(v)}" for k, v in settings.items())]


@attrs.frozen
class Served:
    """A fake ready to serve, and what a user needs to sync from it.

    Args:
        fake: The fake, its history loaded.
        holds: What it holds, for a person ("1,000 deals").
        environment: The fake's credentials, by the environment variable the config names.
        settings: Returns the source's settings in a config file, given the fake's URL.
        notes: Lines to print after the config (how the vendor's tokens rotate, say).
    """

    fake: FakeVendor
    holds: str
    environment: Mapping[str, str]
    settings: Callable[[str], Settings]
    notes: Sequence[str] = ()


def _history(clock: ManualClock, count: int, rng: random.Random) -> list[datetime]:
    """Return ``count`` whole seconds of the last 30 days, oldest first."""
    end = clock().replace(microsecond=0) - timedelta(minutes=1)
    span = int(_HISTORY.total_seconds())
    return sorted(end - timedelta(seconds=rng.randrange(span)) for _ in range(count))


def _secret(prefix: str = "") -> str:
    """Return a new credential, drawn apart from the seeded history."""
    return prefix + secrets.token_hex(16)


def _oauth(prefix: str, client_secret: str, refresh_token: str) -> dict[str, str]:
    """Return an OAuth app's secret and a connection's refresh token, by their variables."""
    return {f"{prefix}_CLIENT_SECRET": client_secret, f"{prefix}_REFRESH_TOKEN": refresh_token}


_ROTATES = (
    "Its refresh token rotates at every refresh: incsync keeps the new one in the token file",
    "beside the database (fake.db.tokens.json), so the exported one works for the first run.",
)


def _hubspot(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeHubSpot(clock=clock, seed=rng.randrange(1 << 30))
    for number, moment in enumerate(_history(clock, records, rng)):
        properties = {
            "dealname": f"{rng.choice(_NAMES)} renewal {number + 1}",
            "amount": str(rng.randrange(500, 50_000, 50)),
            "dealstage": "appointmentscheduled",
            "pipeline": "default",
        }
        fake.load("deals", [moment], properties)
    variable = "FAKE_HUBSPOT_TOKEN"
    return Served(
        fake,
        f"{records:,} deals",
        {variable: fake.private_app_token},
        lambda url: hubspot_settings(url, variable),
    )


def hubspot_settings(url: str, variable: str) -> dict[str, object]:
    """Return the settings of a source reading deals from a fake portal at ``url``.

    Args:
        url: Where the fake listens.
        variable: The environment variable holding the portal's private-app token.
    """
    return {"type": "hubspot", "token_env": variable, "include_archived": True, "base_url": url}


def _quickbooks(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeQuickBooks(clock=clock, client_secret=_secret(), seed=rng.randrange(1 << 30))

    def fields(number: int) -> dict[str, object]:
        amount = round(rng.uniform(40, 12_000), 2)
        return {
            "DocNumber": str(1001 + number),
            "CustomerRef": {"value": "1", "name": rng.choice(_NAMES)},
            "TotalAmt": amount,
            "Balance": amount,
        }

    fake.bulk_load("Invoice", _history(clock, records, rng), fields=fields)
    return Served(
        fake,
        f"{records:,} invoices",
        _oauth("FAKE_QUICKBOOKS", fake.client_secret, fake.grant_tokens().refresh_token),
        lambda url: quickbooks_settings(fake, url, "FAKE_QUICKBOOKS"),
        _ROTATES,
    )


def quickbooks_settings(fake: FakeQuickBooks, url: str, prefix: str) -> dict[str, object]:
    """Return the settings of a source reading the invoices of a fake company at ``url``.

    Args:
        fake: The company.
        url: Where it listens, its token endpoint too.
        prefix: Of the environment variables holding the app's client secret
            (``<prefix>_CLIENT_SECRET``) and the refresh token (``<prefix>_REFRESH_TOKEN``).
    """
    return {
        "type": "quickbooks",
        "realm_id": fake.realm_id,
        "entity": "Invoice",
        "client_id": fake.client_id,
        "client_secret_env": f"{prefix}_CLIENT_SECRET",
        "refresh_token_env": f"{prefix}_REFRESH_TOKEN",
        "include_deletes": True,
        "base_url": url,
        "token_url": f"{url}/oauth2/v1/tokens/bearer",
    }


def _salesforce(records: int, clock: ManualClock, rng: random.Random) -> Served:
    client_secret = _secret()
    fake = FakeSalesforce(
        clock=clock, client_secret=client_secret, refresh_token=_secret("5Aep861")
    )
    fake.bulk_load(
        "Opportunity",
        [
            {
                "Name": f"{rng.choice(_NAMES)} expansion {number + 1}",
                "StageName": "Prospecting",
                "Amount": float(rng.randrange(1_000, 90_000, 100)),
                "CloseDate": (moment + timedelta(days=30)).date(),
                "IsClosed": False,
                "SystemModstamp": moment,
            }
            for number, moment in enumerate(_history(clock, records, rng))
        ],
    )
    return Served(
        fake,
        f"{records:,} opportunities",
        _oauth("FAKE_SALESFORCE", client_secret, fake.refresh_token),
        lambda url: {
            "type": "salesforce",
            "client_id": "fake-consumer-key",
            "client_secret_env": "FAKE_SALESFORCE_CLIENT_SECRET",
            "refresh_token_env": "FAKE_SALESFORCE_REFRESH_TOKEN",
            "include_deleted": True,
            "login_url": url,
        },
    )


def _xero(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeXero(clock=clock, client_secret=_secret(), seed=rng.randrange(1 << 30))
    fake.bulk_load(
        _history(clock, records, rng),
        lambda number: {"Reference": f"{rng.choice(_NAMES)} {number + 1}"},
    )
    return Served(
        fake,
        f"{records:,} invoices",
        _oauth("FAKE_XERO", fake.client_secret, fake.grant_tokens().refresh_token),
        lambda url: {
            "type": "xero",
            "tenant_id": fake.tenant_id,
            "client_id": fake.client_id,
            "client_secret_env": "FAKE_XERO_CLIENT_SECRET",
            "refresh_token_env": "FAKE_XERO_REFRESH_TOKEN",
            "base_url": f"{url}/api.xro/2.0",
            "token_url": f"{url}/connect/token",
        },
        _ROTATES,
    )


def _stripe(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeStripe(clock=clock, seed=rng.randrange(1 << 30))
    fake.load("invoices", _history(clock, records, rng))
    return Served(
        fake,
        f"{records:,} invoices",
        {"FAKE_STRIPE_SECRET_KEY": fake.secret_key},
        lambda url: {
            "type": "stripe",
            "secret_key_env": "FAKE_STRIPE_SECRET_KEY",
            "resource": "invoices",
            "base_url": url,
        },
    )


def _pipedrive(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakePipedrive(clock=clock, api_token=_secret())
    for number, moment in enumerate(_history(clock, records, rng)):
        title = f"{rng.choice(_NAMES)} deal {number + 1}"
        fake.load([moment], {"title": title, "value": rng.randrange(100, 20_000)})
    return Served(
        fake,
        f"{records:,} deals",
        {"FAKE_PIPEDRIVE_API_TOKEN": fake.api_token},
        lambda url: {
            "type": "pipedrive",
            "api_token_env": "FAKE_PIPEDRIVE_API_TOKEN",
            "base_url": url,
        },
    )


def _rest(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeGenericRest(clock=clock, token=_secret())
    for moment in _history(clock, records, rng):
        fake.create({"name": rng.choice(_NAMES), "amount": rng.randrange(1, 997)}, moment)
    return Served(
        fake,
        f"{records:,} items",
        {"FAKE_REST_API_TOKEN": fake.token},
        lambda url: {
            "type": "rest",
            "base_url": url,
            "path": "/v1/items",
            "ordered": True,
            "params": {"include_deleted": True},
            "filter": {"param": "updated_since", "format": "iso8601"},
            "records": {"path": "data.items", "id": "id", "updated_at": "meta.updated_at"},
            "tombstone": {"field": "status", "values": ["deleted"]},
            "auth": {"kind": "bearer", "secret": "FAKE_REST_API_TOKEN"},
            "paging": {"style": "offset", "size": fake.max_page_size},
        },
    )


VENDORS: Mapping[str, Callable[[int, ManualClock, random.Random], Served]] = {
    "hubspot": _hubspot,
    "pipedrive": _pipedrive,
    "quickbooks": _quickbooks,
    "rest": _rest,
    "salesforce": _salesforce,
    "stripe": _stripe,
    "xero": _xero,
}
"""The fakes ``serve`` knows, by the connector type a config file names them with."""


def instructions(vendor: str, served: Served, url: str) -> str:
    """Return what ``serve`` prints once the fake listens at ``url``.

    Args:
        vendor: The connector type.
        served: The fake and what it takes to sync from it.
        url: Where it listens.
    """
    exports = [f"export {name}={shlex.quote(value)}" for name, value in served.environment.items()]
    config = [
        "[store]",
        'path = "fake.db"',
        "",
        *source_table(f"fake-{vendor}", served.settings(url)),
    ]
    notes = ["", *served.notes] if served.notes else []
    return "\n".join(
        [
            f"Fake {vendor} API at {url}: {served.holds} from the last 30 days, on the real clock.",
            "",
            "1. In the shell that runs incsync:",
            "",
            *exports,
            "",
            "2. Save this as incsync.toml:",
            "",
            *config,
            "",
            "3. Then: incsync run --config incsync.toml; incsync status --config incsync.toml",
            *notes,
            "",
            "Serving until Ctrl-C.",
            "",
        ]
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m incsync.testing.fakes",
        description="Serve a fake vendor API, to try the incsync command against.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve one fake vendor API until Ctrl-C, and print how to sync from it",
        description="Serve one fake vendor API with a seeded history on the real clock, print "
        "its URL, credentials and an incsync config for it, and serve until Ctrl-C.",
        epilog="example:\n  python -m incsync.testing.fakes serve hubspot --records 5000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("vendor", choices=sorted(VENDORS), help="the API to serve")
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=0, help="the port (default: a free one, printed)"
    )
    serve.add_argument(
        "--records",
        type=_count,
        default=1_000,
        metavar="N",
        help="records in the fake's history (default: 1000)",
    )
    serve.add_argument("--seed", type=int, default=0, help="seeds the history")
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65_535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0 picks one)")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of records")
    return int(text)


def _serve_until_stopped(vendor: str, served: Served, host: str, port: int, out: TextIO) -> None:
    """Serve until SIGINT or SIGTERM; print the instructions once it listens."""
    stop = threading.Event()

    def stopping(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {
        number: signal.signal(number, stopping) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with served.fake.serve(host=host, port=port) as url:
            out.write(instructions(vendor, served, url))
            out.flush()
            stop.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    out.write(f"Stopped after {len(served.fake.requests):,} requests.\n")
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m incsync.testing.fakes``; return 0 once stopped, 1 when it cannot listen.

    Args:
        argv: The arguments (``sys.argv[1:]`` when omitted).
    """
    arguments = _parser().parse_args(argv)
    rng = random.Random(arguments.seed)
    served = VENDORS[arguments.vendor](arguments.records, RunningClock(), rng)
    try:
        _serve_until_stopped(arguments.vendor, served, arguments.host, arguments.port, sys.stdout)
    except OSError as error:
        where = f"{arguments.host}:{arguments.port}"
        print(
            f"python -m incsync.testing.fakes: cannot listen on {where}: {error}", file=sys.stderr
        )
        return 1
    return 0
