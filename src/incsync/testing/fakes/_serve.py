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
import random
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
from incsync.testing.fakes._server import FakeVendor
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.testing.fakes.hubspot import FakeHubSpot
from incsync.testing.fakes.pipedrive import FakePipedrive
from incsync.testing.fakes.quickbooks import FakeQuickBooks
from incsync.testing.fakes.salesforce import FakeSalesforce
from incsync.testing.fakes.stripe import FakeStripe
from incsync.testing.fakes.xero import FakeXero
from incsync.timestamps import utc_now

__all__ = ["VENDORS", "Served", "main"]

_HISTORY = timedelta(days=30)
_NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka")


class _RunningClock(ManualClock):
    """The real time, for a fake a person drives: it moves by itself.

    It is a :class:`~incsync.testing.ManualClock` so that every fake takes it; moving it
    (``advance``, ``set``) shifts it from the real time, which it then keeps following.
    """

    def __init__(self) -> None:
        super().__init__(utc_now())
        self._offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock ``delta`` ahead of where it would be; return the new time."""
        self._offset += delta
        return self()

    def set(self, moment: datetime) -> None:
        """Make the clock read ``moment`` now; it runs on from there."""
        self._offset = moment - utc_now()


@attrs.frozen
class Served:
    """A fake ready to serve, and what a user needs to sync from it.

    Args:
        fake: The fake, its history loaded.
        holds: What it holds, for a person ("1,000 deals").
        environment: The fake's credentials, by the environment variable the config names.
        settings: Returns the config lines of the source's table, given the fake's URL.
        notes: Lines to print after the config (how the vendor's tokens rotate, say).
    """

    fake: FakeVendor
    holds: str
    environment: Mapping[str, str]
    settings: Callable[[str], Sequence[str]]
    notes: Sequence[str] = ()


def _history(clock: ManualClock, count: int, rng: random.Random) -> list[datetime]:
    """Return ``count`` whole seconds of the last 30 days, oldest first."""
    end = clock().replace(microsecond=0) - timedelta(minutes=1)
    span = int(_HISTORY.total_seconds())
    return sorted(end - timedelta(seconds=rng.randrange(span)) for _ in range(count))


def _secret(rng: random.Random, prefix: str = "") -> str:
    return prefix + "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(32))


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
    return Served(
        fake,
        f"{records:,} deals",
        {"FAKE_HUBSPOT_TOKEN": fake.private_app_token},
        lambda url: (
            'type = "hubspot"',
            'token_env = "FAKE_HUBSPOT_TOKEN"',
            "include_archived = true",
            f'base_url = "{url}"',
        ),
    )


def _quickbooks(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeQuickBooks(clock=clock, client_secret=_secret(rng), seed=rng.randrange(1 << 30))

    def fields(number: int) -> dict[str, object]:
        amount = round(rng.uniform(40, 12_000), 2)
        return {
            "DocNumber": str(1001 + number),
            "CustomerRef": {"value": "1", "name": rng.choice(_NAMES)},
            "TotalAmt": amount,
            "Balance": amount,
        }

    fake.bulk_load("Invoice", _history(clock, records, rng), fields=fields)
    grant = fake.grant_tokens()
    return Served(
        fake,
        f"{records:,} invoices",
        {
            "FAKE_QUICKBOOKS_CLIENT_SECRET": fake.client_secret,
            "FAKE_QUICKBOOKS_REFRESH_TOKEN": grant.refresh_token,
        },
        lambda url: (
            'type = "quickbooks"',
            f'realm_id = "{fake.realm_id}"',
            'entity = "Invoice"',
            f'client_id = "{fake.client_id}"',
            'client_secret_env = "FAKE_QUICKBOOKS_CLIENT_SECRET"',
            'refresh_token_env = "FAKE_QUICKBOOKS_REFRESH_TOKEN"',
            "include_deletes = true",
            f'base_url = "{url}"',
            f'token_url = "{url}/oauth2/v1/tokens/bearer"',
        ),
        _ROTATES,
    )


def _salesforce(records: int, clock: ManualClock, rng: random.Random) -> Served:
    client_secret = _secret(rng)
    fake = FakeSalesforce(
        clock=clock, client_secret=client_secret, refresh_token=_secret(rng, "5Aep861")
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
        {
            "FAKE_SALESFORCE_CLIENT_SECRET": client_secret,
            "FAKE_SALESFORCE_REFRESH_TOKEN": fake.refresh_token,
        },
        lambda url: (
            'type = "salesforce"',
            'client_id = "fake-consumer-key"',
            'client_secret_env = "FAKE_SALESFORCE_CLIENT_SECRET"',
            'refresh_token_env = "FAKE_SALESFORCE_REFRESH_TOKEN"',
            "include_deleted = true",
            f'login_url = "{url}"',
        ),
    )


def _xero(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeXero(clock=clock, seed=rng.randrange(1 << 30))
    fake.bulk_load(
        _history(clock, records, rng),
        lambda number: {"Reference": f"{rng.choice(_NAMES)} {number + 1}"},
    )
    grant = fake.grant_tokens()
    return Served(
        fake,
        f"{records:,} invoices",
        {
            "FAKE_XERO_CLIENT_SECRET": fake.client_secret,
            "FAKE_XERO_REFRESH_TOKEN": grant.refresh_token,
        },
        lambda url: (
            'type = "xero"',
            f'tenant_id = "{fake.tenant_id}"',
            f'client_id = "{fake.client_id}"',
            'client_secret_env = "FAKE_XERO_CLIENT_SECRET"',
            'refresh_token_env = "FAKE_XERO_REFRESH_TOKEN"',
            f'base_url = "{url}/api.xro/2.0"',
            f'token_url = "{url}/connect/token"',
        ),
        _ROTATES,
    )


def _stripe(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeStripe(clock=clock, seed=rng.randrange(1 << 30))
    fake.load("invoices", _history(clock, records, rng))
    return Served(
        fake,
        f"{records:,} invoices",
        {"FAKE_STRIPE_SECRET_KEY": fake.secret_key},
        lambda url: (
            'type = "stripe"',
            'secret_key_env = "FAKE_STRIPE_SECRET_KEY"',
            'resource = "invoices"',
            f'base_url = "{url}"',
        ),
    )


def _pipedrive(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakePipedrive(clock=clock, api_token=_secret(rng))
    for number, moment in enumerate(_history(clock, records, rng)):
        title = f"{rng.choice(_NAMES)} deal {number + 1}"
        fake.load([moment], {"title": title, "value": rng.randrange(100, 20_000)})
    return Served(
        fake,
        f"{records:,} deals",
        {"FAKE_PIPEDRIVE_API_TOKEN": fake.api_token},
        lambda url: (
            'type = "pipedrive"',
            'api_token_env = "FAKE_PIPEDRIVE_API_TOKEN"',
            f'base_url = "{url}"',
        ),
    )


def _rest(records: int, clock: ManualClock, rng: random.Random) -> Served:
    fake = FakeGenericRest(clock=clock, token=_secret(rng))
    for moment in _history(clock, records, rng):
        fake.create({"name": rng.choice(_NAMES), "amount": rng.randrange(1, 997)}, moment)
    return Served(
        fake,
        f"{records:,} items",
        {"FAKE_REST_API_TOKEN": fake.token},
        lambda url: (
            'type = "rest"',
            f'base_url = "{url}"',
            'path = "/v1/items"',
            "ordered = true",
            "params = { include_deleted = true }",
            'filter = { param = "updated_since", format = "iso8601" }',
            'records = { path = "data.items", id = "id", updated_at = "meta.updated_at" }',
            'tombstone = { field = "status", values = ["deleted"] }',
            'auth = { kind = "bearer", secret = "FAKE_REST_API_TOKEN" }',
            f'paging = {{ style = "offset", size = {fake.max_page_size} }}',
        ),
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
        f"[sources.fake-{vendor}]",
        *served.settings(url),
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
    serve.add_argument("--seed", type=int, default=0, help="seeds the history and credentials")
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
    served = VENDORS[arguments.vendor](arguments.records, _RunningClock(), rng)
    try:
        _serve_until_stopped(arguments.vendor, served, arguments.host, arguments.port, sys.stdout)
    except OSError as error:
        where = f"{arguments.host}:{arguments.port}"
        print(
            f"python -m incsync.testing.fakes: cannot listen on {where}: {error}", file=sys.stderr
        )
        return 1
    return 0
