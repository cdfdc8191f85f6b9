"""The connector types a config file may name: each a table of settings and a factory.

Adding a type is one :data:`CONNECTOR_TYPES` entry: the settings it accepts (with their kinds,
defaults and which are secrets) and a function that builds the connector from validated values.
Secrets are never written in the file; a secret setting ``token`` is given as ``token_env``, the
name of an environment variable, and the factory receives the variable's value under ``token``.
A type with a configuration language of its own (``rest``) validates the source's whole table
with its ``parse`` function instead, and names its secrets' variables itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import attrs

from incsync.connectors._rest_config import RestConfig
from incsync.connectors.auth import BearerToken, OAuth2Refresh, OAuthVendor
from incsync.connectors.http import HttpOptions
from incsync.connectors.memory import InMemoryConnector
from incsync.connectors.rest import RestConnector
from incsync.connectors.sample import sample_source
from incsync.protocols import Connector, TokenKeeper
from incsync.vendors.hubspot import HUBSPOT_API, HubSpotConnector
from incsync.vendors.pipedrive import MAX_PAGE_SIZE as PIPEDRIVE_PAGE_SIZE
from incsync.vendors.pipedrive import PIPEDRIVE_API, PipedriveConnector
from incsync.vendors.quickbooks import (
    QUICKBOOKS_OAUTH,
    QUICKBOOKS_PRODUCTION_URL,
    QUICKBOOKS_TOKEN_URL,
    QuickBooksConnector,
)
from incsync.vendors.salesforce import SalesforceConnector
from incsync.vendors.stripe import STRIPE_API, StripeConnector
from incsync.vendors.xero import XERO_API, XERO_OAUTH, XERO_TOKEN_URL, XeroConnector

__all__ = [
    "CONNECTOR_TYPES",
    "HTTP_OPTIONS",
    "KINDS",
    "SAVED_TOKENS",
    "ConnectorType",
    "SavedTokens",
    "Setting",
    "Settings",
]

KINDS: Mapping[str, str] = MappingProxyType(
    {
        "text": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "text_list": "a list of strings",
        "timestamp": "a TOML date-time with an offset",
    }
)
"""The kinds a setting's value may have, each with how it is written in TOML."""


@attrs.frozen
class Setting:
    """One setting a connector type accepts.

    Args:
        kind: One of :data:`KINDS`.
        required: Whether the source must give it.
        default: The value when the source does not give it (``None``: left to the connector).
        secret: Whether it is a credential: given as ``<name>_env`` naming an environment variable,
            and never accepted as a literal value.
        help: What it is, for error messages and the documentation.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    required: bool = False
    default: object = None
    secret: bool = False
    help: str = ""


Settings = Mapping[str, Any]
"""Validated settings: every declared name, with its value or default (secrets resolved)."""

SAVED_TOKENS = "saved_tokens"
"""The settings key under which a type that ``saves_tokens`` receives :class:`SavedTokens`."""

HTTP_OPTIONS = "http_options"
"""The settings key under which a type reading over HTTP may receive its
:class:`~incsync.connectors.http.HttpOptions` (``incsync check`` makes one attempt per request);
without it, the defaults."""


def _options(settings: Settings) -> HttpOptions | None:
    options: HttpOptions | None = settings.get(HTTP_OPTIONS)
    return options


@attrs.frozen
class SavedTokens:
    """What the token keeper adds to a rotating type's settings (its refresh token aside).

    Args:
        access_token: The last access token saved, still usable until ``expires_at``.
        expires_at: When ``access_token`` expires (aware).
        keeper: Keeps the tokens of every refresh (the token file, or the state store).
    """

    access_token: str | None = attrs.field(default=None, repr=False)
    expires_at: datetime | None = None
    keeper: TokenKeeper | None = None


@attrs.frozen
class ConnectorType:
    """A connector type a config file can name with ``type = "..."``.

    Args:
        name: The ``type`` value.
        summary: One line saying what it reads.
        settings: The settings it accepts, by name.
        build: Builds the connector from validated settings.
        saves_tokens: Whether the vendor rotates refresh tokens, so the command keeps them (in
            the token file or the state store): ``build`` then receives :data:`SAVED_TOKENS`
            (when a keeper is in use) and the kept refresh token, when there is one, as
            ``refresh_token``.
        parse: For a type configured by a language of its own: validates the source's table
            (without ``type``) and returns the settings, and the environment variable of each
            secret by the dotted key that names it (``{"auth.secret": "BILLING_API_TOKEN"}``);
            ``build`` receives each secret's value under that key. Its ``ConfigurationError``
            messages start with the dotted key at fault (``"filter.param: ..."``).
    """

    name: str
    summary: str
    settings: Mapping[str, Setting]
    build: Callable[[Settings], Connector]
    saves_tokens: bool = False
    parse: Callable[[Mapping[str, Any]], tuple[Settings, Mapping[str, str]]] | None = None


def _start_of_today() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _sample(settings: Settings) -> Connector:
    # Generated afresh in every process, so ``end`` must be stable for a repeated run to find
    # the same invoices: midnight UTC today, unless the file pins it.
    end = settings["end"] or _start_of_today()
    source = sample_source(settings["count"], end=end, seed=settings["seed"])
    return InMemoryConnector(
        source, page_size=settings["page_size"], page_delay=settings["page_delay"]
    )


def _hubspot(settings: Settings) -> Connector:
    return HubSpotConnector(
        settings["base_url"],
        auth=BearerToken(settings["token"]),
        object_type=settings["object_type"],
        properties=settings["properties"],
        include_archived=settings["include_archived"],
        options=_options(settings),
    )


def _refreshing(vendor: OAuthVendor, settings: Settings) -> OAuth2Refresh:
    """The OAuth flow of a source, resumed from the tokens kept for it."""
    saved: SavedTokens = settings.get(SAVED_TOKENS) or SavedTokens()
    return vendor.refresh(
        settings["client_id"],
        settings["client_secret"],
        settings["refresh_token"],
        token_url=settings["token_url"],
        access_token=saved.access_token,
        expires_at=saved.expires_at,
        keeper=saved.keeper,
    )


def _quickbooks(settings: Settings) -> Connector:
    return QuickBooksConnector(
        settings["realm_id"],
        settings["entity"],
        auth=_refreshing(QUICKBOOKS_OAUTH, settings),
        base_url=settings["base_url"],
        page_size=settings["page_size"],
        include_deletes=settings["include_deletes"],
        options=_options(settings),
    )


def _salesforce(settings: Settings) -> Connector:
    saved: SavedTokens = settings.get(SAVED_TOKENS) or SavedTokens()
    # The saved access token is not handed back: it is only usable with the instance URL the
    # same token answer named, so every run starts with a refresh.
    return SalesforceConnector(
        settings["client_id"],
        settings["client_secret"],
        settings["refresh_token"],
        keeper=saved.keeper,
        sobject=settings["sobject"],
        fields=settings["fields"],
        include_deleted=settings["include_deleted"],
        login_url=settings["login_url"],
        instance_url=settings["instance_url"],
        api_version=settings["api_version"],
        batch_size=settings["batch_size"],
        options=_options(settings),
    )


def _xero(settings: Settings) -> Connector:
    return XeroConnector(
        settings["tenant_id"],
        auth=_refreshing(XERO_OAUTH, settings),
        endpoint=settings["endpoint"],
        id_field=settings["id_field"],
        base_url=settings["base_url"],
        options=_options(settings),
    )


def _stripe(settings: Settings) -> Connector:
    return StripeConnector(
        settings["base_url"],
        secret_key=settings["secret_key"],
        resource=settings["resource"],
        options=_options(settings),
    )


def _pipedrive(settings: Settings) -> Connector:
    return PipedriveConnector(
        settings["base_url"],
        api_token=settings["api_token"],
        page_size=settings["page_size"],
        include_deleted=settings["include_deleted"],
        options=_options(settings),
    )


_REST_SECRET = "auth.secret"


def _rest_parse(table: Mapping[str, Any]) -> tuple[Settings, Mapping[str, str]]:
    # RestConfig has its own configuration language and error messages ("filter.param: ...");
    # its auth.secret already names an environment variable.
    config = RestConfig.from_mapping(table)
    variables = {} if config.auth.secret is None else {_REST_SECRET: config.auth.secret}
    return {"config": config}, variables


def _rest(settings: Settings) -> Connector:
    config: RestConfig = settings["config"]
    secrets = {} if config.auth.secret is None else {config.auth.secret: settings[_REST_SECRET]}
    return RestConnector(config, secrets=secrets, options=_options(settings))


def _types(*types: ConnectorType) -> Mapping[str, ConnectorType]:
    return MappingProxyType({connector_type.name: connector_type for connector_type in types})


CONNECTOR_TYPES: Mapping[str, ConnectorType] = _types(
    ConnectorType(
        "sample",
        "generated invoices held in memory (a demo source; no network)",
        {
            "count": Setting("integer", default=1_000, help="how many invoices"),
            "seed": Setting("integer", default=0, help="makes the invoices repeatable"),
            "end": Setting("timestamp", help="the newest invoice's time (midnight UTC today)"),
            "page_size": Setting("integer", default=500, help="records per page"),
            "page_delay": Setting(
                "number", default=0.0, help="seconds to wait before each page (network time)"
            ),
        },
        _sample,
    ),
    ConnectorType(
        "hubspot",
        "one HubSpot CRM object type (deals by default), with a private-app token",
        {
            "token": Setting("text", required=True, secret=True, help="private-app token"),
            "object_type": Setting("text", default="deals", help="deals, contacts, companies…"),
            "properties": Setting("text_list", help="properties to read (HubSpot's defaults)"),
            "include_archived": Setting("boolean", default=False, help="read archived objects"),
            "base_url": Setting("text", default=HUBSPOT_API, help="the API root"),
        },
        _hubspot,
    ),
    ConnectorType(
        "quickbooks",
        "one QuickBooks Online entity of one company, with OAuth2 refresh",
        {
            "realm_id": Setting("text", required=True, help="the company id"),
            "entity": Setting("text", required=True, help="Invoice, Payment, Customer…"),
            "client_id": Setting("text", required=True, help="the app's client id"),
            "client_secret": Setting("text", required=True, secret=True, help="client secret"),
            "refresh_token": Setting("text", required=True, secret=True, help="refresh token"),
            "page_size": Setting("integer", default=1_000, help="records per page, 2 to 1,000"),
            "include_deletes": Setting("boolean", default=False, help="read deletions (cdc)"),
            "base_url": Setting("text", default=QUICKBOOKS_PRODUCTION_URL, help="the API root"),
            "token_url": Setting("text", default=QUICKBOOKS_TOKEN_URL, help="token endpoint"),
        },
        _quickbooks,
        saves_tokens=True,
    ),
    ConnectorType(
        "salesforce",
        "one Salesforce SObject (Opportunity by default), with OAuth2 refresh",
        {
            "client_id": Setting("text", required=True, help="the connected app's consumer key"),
            "client_secret": Setting("text", required=True, secret=True, help="consumer secret"),
            "refresh_token": Setting("text", required=True, secret=True, help="refresh token"),
            "sobject": Setting("text", default="Opportunity", help="the SObject to read"),
            "fields": Setting("text_list", help="fields to read (required unless Opportunity)"),
            "include_deleted": Setting("boolean", default=False, help="read deleted rows"),
            "login_url": Setting(
                "text", default="https://login.salesforce.com", help="where the token endpoint is"
            ),
            "instance_url": Setting("text", help="the org's API root (from the token answer)"),
            "api_version": Setting("text", default="59.0", help="REST API version"),
            "batch_size": Setting("integer", default=2_000, help="records per page, 200 to 2,000"),
        },
        _salesforce,
        saves_tokens=True,
    ),
    ConnectorType(
        "xero",
        "one Xero Accounting API list (Invoices by default) of one organisation",
        {
            "tenant_id": Setting("text", required=True, help="the organisation's tenant id"),
            "endpoint": Setting("text", default="Invoices", help="Invoices, Contacts, Payments…"),
            "id_field": Setting("text", help="the list's id field (known for the usual lists)"),
            "client_id": Setting("text", required=True, help="the app's client id"),
            "client_secret": Setting("text", required=True, secret=True, help="client secret"),
            "refresh_token": Setting("text", required=True, secret=True, help="refresh token"),
            "base_url": Setting("text", default=XERO_API, help="the API root"),
            "token_url": Setting("text", default=XERO_TOKEN_URL, help="token endpoint"),
        },
        _xero,
        saves_tokens=True,
    ),
    ConnectorType(
        "stripe",
        "Stripe invoices or charges: a full list once, then events",
        {
            "secret_key": Setting("text", required=True, secret=True, help="sk_… or rk_… key"),
            "resource": Setting("text", default="invoices", help="invoices or charges"),
            "base_url": Setting("text", default=STRIPE_API, help="the API root"),
        },
        _stripe,
    ),
    ConnectorType(
        "pipedrive",
        "a Pipedrive company's deals, with an API token",
        {
            "api_token": Setting("text", required=True, secret=True, help="the API token"),
            "page_size": Setting(
                "integer", default=PIPEDRIVE_PAGE_SIZE, help="deals per page, 1 to 500"
            ),
            "include_deleted": Setting("boolean", default=True, help="read deleted deals"),
            "base_url": Setting("text", default=PIPEDRIVE_API, help="the API root"),
        },
        _pipedrive,
    ),
    ConnectorType(
        "rest",
        "any JSON API with an updated-since filter, described in the source's table",
        {},
        _rest,
        parse=_rest_parse,
    ),
)
"""Every connector type a config file may name, by ``type``."""
