"""Salesforce: read one SObject through SOQL ``query``/``queryAll`` in ``SystemModstamp`` order.

Each read runs ``SELECT Id, SystemModstamp, <fields> FROM <SObject> WHERE SystemModstamp >= T
ORDER BY SystemModstamp, Id`` and follows ``nextRecordsUrl`` until ``done``. Salesforce answers a
query from a snapshot held behind a query locator; a locator that expires mid-read
(``INVALID_QUERY_LOCATOR``) is not fatal: the read asks again from the last ``SystemModstamp`` it
saw (``>=``, since SOQL offers no row-value comparison and ``OR`` would be needed) and drops the
ids it already yielded at exactly that time. Changes made while a read pages are not in its
snapshot; they carry a later ``SystemModstamp`` and come with the next cycle.

With ``include_deleted`` the read uses ``queryAll``, and rows with ``IsDeleted: true`` become
tombstones. Credentials are OAuth2 with a refresh token; the token answer's ``instance_url`` is
where the API is called (a rotated refresh token reaches the host's ``on_refresh``). A 403
``REQUEST_LIMIT_EXCEEDED`` for the daily allowance fails the cycle at once with ``retry_at``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from incsync.connectors.auth import Auth, AuthFlow, OAuthVendor, TokenSet
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.paging import KeysetPosition
from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import salesforce_throttle
from incsync.cursor import Window
from incsync.errors import (
    BadResponseError,
    ConfigurationError,
    PermanentSourceError,
    TransientSourceError,
)
from incsync.records import RecordFormat, text_id
from incsync.timestamps import UTC, parse_timestamp

__all__ = ["DEFAULT_OPPORTUNITY_FIELDS", "SalesforceConnector"]

DEFAULT_OPPORTUNITY_FIELDS = (
    "Name",
    "StageName",
    "Amount",
    "CloseDate",
    "IsClosed",
    "AccountId",
    "OwnerId",
    "LastModifiedDate",
)
"""The fields read from ``Opportunity`` when no field list is given."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_VERSION = re.compile(r"[0-9]{2}\.0")
_fromisoformat = datetime.fromisoformat
_SYSTEM_FIELDS = ("Id", "SystemModstamp", "IsDeleted")
# A locator may expire again while the re-query's own pages are followed; this many re-queries
# in a row that bring nothing new mean the source cannot be read this way now.
_MAX_FRUITLESS_REQUERIES = 3


_OAUTH = OAuthVendor("https://login.salesforce.com/services/oauth2/token", client_auth="body")
# The token endpoint lives at the login host, which sandboxes and My Domains change.
_TOKEN_PATH = httpx.URL(_OAUTH.token_url).path


class _SalesforceOAuth(Auth):
    """OAuth2 refresh that learns ``instance_url`` from the token answer and calls the API there.

    It wraps the refresh flow every vendor uses, rather than extending it, so that flow is built
    in one place (:meth:`OAuthVendor.refresh <incsync.connectors.auth.OAuthVendor.refresh>`).
    """

    def __init__(
        self,
        login_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        instance_url: str | None,
        access_token: str | None,
        on_refresh: Callable[[TokenSet], None] | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.instance_url = instance_url
        self._host_on_refresh = on_refresh
        self._tokens = _OAUTH.refresh(
            client_id,
            client_secret,
            refresh_token,
            token_url=login_url.rstrip("/") + _TOKEN_PATH,
            access_token=access_token,
            on_refresh=self._learn_instance,
            clock=clock,
        )

    def secrets(self) -> Sequence[str]:
        """Return the secrets of the refresh flow."""
        return self._tokens.secrets()

    def __repr__(self) -> str:
        return repr(self._tokens)

    def _learn_instance(self, tokens: TokenSet) -> None:
        url = tokens.extra.get("instance_url")
        if url is not None:
            self.instance_url = _checked_instance_url(url)
        if self._host_on_refresh is not None:
            self._host_on_refresh(tokens)

    def auth_flow(self, request: httpx.Request) -> AuthFlow:
        """Sign ``request`` as OAuth2Refresh does, sending it to the org's ``instance_url``."""
        flow = self._tokens.auth_flow(request)
        try:
            outgoing = next(flow)
            while True:
                if outgoing is request and self.instance_url is not None:
                    _rebase(outgoing, httpx.URL(self.instance_url))
                response = yield outgoing
                outgoing = flow.send(response)
        except StopIteration:
            return
        finally:
            # The refresh flow holds its refresh lock across a yield: close it on every path.
            flow.close()


def _checked_instance_url(url: object) -> str:
    parsed = httpx.URL(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadResponseError(
            f"salesforce: the token answer's instance_url {url!r} is not an http(s) URL; check "
            f"login_url",
            vendor="salesforce",
        )
    return str(parsed.copy_with(path="/", query=None, fragment=None)).rstrip("/")


def _rebase(request: httpx.Request, origin: httpx.URL) -> None:
    if (request.url.scheme, request.url.host, request.url.port) == (
        origin.scheme,
        origin.host,
        origin.port,
    ):
        return
    request.url = request.url.copy_with(scheme=origin.scheme, host=origin.host, port=origin.port)
    request.headers["Host"] = request.url.netloc.decode("ascii")


def _soql_time(moment: datetime) -> str:
    """An unquoted SOQL dateTime literal, floored to Salesforce's millisecond precision."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def _key(raw: object) -> tuple[datetime, str] | None:
    """A raw record's ``(SystemModstamp, Id)``, or ``None`` when it is malformed."""
    if type(raw) is dict:
        # The common case in as few steps as possible: this runs once per record.
        record_id, stamp = raw.get("Id"), raw.get("SystemModstamp")
        if type(record_id) is str and record_id and type(stamp) is str:
            try:
                moment = _fromisoformat(stamp)
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is UTC:
                return moment, record_id
    if not isinstance(raw, Mapping):
        return None
    record_id, stamp = raw.get("Id"), raw.get("SystemModstamp")
    if not isinstance(record_id, str) or not record_id or stamp is None:
        return None
    try:
        return parse_timestamp(stamp, "SystemModstamp"), record_id
    except ValueError:
        return None


_Keyed = tuple["tuple[datetime, str] | None", Any]


def _unread(keyed: Sequence[_Keyed], position: KeysetPosition | None) -> list[_Keyed]:
    """Return the rows after ``position`` (and every malformed one), in their order.

    Rows come in (SystemModstamp, Id) order, so rows read before lead the page: the scan stops
    at the first new row. (Were the order ever broken, a row read before that came later would be
    passed on again: the same version, which the sink leaves as it is.)
    """
    if position is None:
        return list(keyed)
    first_new = next(
        (at for at, (key, _) in enumerate(keyed) if key is not None and position.is_new(key)),
        len(keyed),
    )
    lead = [(key, raw) for key, raw in keyed[:first_new] if key is None]
    return [*lead, *keyed[first_new:]]


def _last_keys(keyed: Sequence[_Keyed]) -> list[tuple[datetime, str]]:
    """Return the keys of the trailing rows sharing the page's last readable SystemModstamp.

    Only they can move the keyset position on (rows come in order); scanning back from the end
    spares reading every key of the page again. (Were the order broken, the position would be
    set lower than it could be, which reads more next time, never less.)
    """
    keys: list[tuple[datetime, str]] = []
    for key, _ in reversed(keyed):
        if key is None:
            continue
        if keys and key[0] != keys[0][0]:
            break
        keys.append(key)
    return keys


class SalesforceConnector(HttpConnector):
    """Reads one Salesforce SObject, oldest ``SystemModstamp`` first, through the REST API.

    Args:
        client_id: The connected app's consumer key.
        client_secret: The connected app's consumer secret.
        refresh_token: The refresh token the host stored.
        sobject: The SObject to read (``"Opportunity"``, ``"Merchandise__c"``…).
        fields: The fields to read besides ``Id`` and ``SystemModstamp``; required unless
            ``sobject`` is ``Opportunity`` (:data:`DEFAULT_OPPORTUNITY_FIELDS`).
        include_deleted: Read with ``queryAll`` so deleted rows (still in the recycle bin) come
            as tombstones.
        login_url: Where the token endpoint lives (``https://test.salesforce.com`` for
            sandboxes, or the org's My Domain).
        instance_url: The org's API root, when known; otherwise it is taken from the token
            answer (which also overrides this value whenever it names one).
        access_token: A still-valid access token (needs ``instance_url``).
        on_refresh: Called with the new tokens after every refresh: store ``refresh_token``.
        api_version: The REST API version, such as ``"59.0"``.
        batch_size: Records per page asked of Salesforce (200 to 2,000).
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise. Its clock
            also times the access token's expiry.

    Raises:
        ConfigurationError: A name, version or batch size is invalid, or no field list was given.
    """

    vendor: ClassVar[str] = "salesforce"
    ordered = True
    id_field = "Id"
    updated_at_field = "SystemModstamp"
    quota_retry_after: ClassVar[timedelta] = timedelta(hours=1)

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        sobject: str = "Opportunity",
        fields: Sequence[str] | None = None,
        include_deleted: bool = False,
        login_url: str = "https://login.salesforce.com",
        instance_url: str | None = None,
        access_token: str | None = None,
        on_refresh: Callable[[TokenSet], None] | None = None,
        api_version: str = "59.0",
        batch_size: int = 2_000,
        options: HttpOptions | None = None,
    ) -> None:
        if not _NAME.fullmatch(sobject):
            raise ConfigurationError(f"sobject {sobject!r} is not a Salesforce API name")
        if fields is None:
            if sobject.lower() != "opportunity":
                raise ConfigurationError(f"give the fields to read from {sobject}")
            fields = DEFAULT_OPPORTUNITY_FIELDS
        for field in fields:
            if not _NAME.fullmatch(str(field)):
                raise ConfigurationError(f"field {field!r} is not a Salesforce field name")
        if not _VERSION.fullmatch(api_version):
            raise ConfigurationError(f"api_version must look like '59.0', not {api_version!r}")
        if not 200 <= batch_size <= 2_000:
            raise ConfigurationError(f"batch_size must be 200 to 2000, not {batch_size!r}")
        if access_token is not None and instance_url is None:
            raise ConfigurationError("an access_token needs the instance_url it belongs to")
        instance = None if instance_url is None else _checked_instance_url(instance_url)
        options = HttpOptions() if options is None else options
        self.sobject = sobject
        self.include_deleted = include_deleted
        system = {name.lower() for name in _SYSTEM_FIELDS}
        extra = [field for field in dict.fromkeys(fields) if field.lower() not in system]
        self.fields = ("Id", "SystemModstamp", *(["IsDeleted"] if include_deleted else []), *extra)
        self.batch_size = batch_size
        self._api = f"/services/data/v{api_version}/{'queryAll' if include_deleted else 'query'}"
        self._oauth = _SalesforceOAuth(
            login_url,
            client_id,
            client_secret,
            refresh_token,
            instance_url=instance,
            access_token=access_token,
            on_refresh=on_refresh,
            clock=options.clock,
        )
        super().__init__(instance or login_url, auth=self._oauth, options=options)

    def __enter__(self) -> SalesforceConnector:
        return self

    @property
    def instance_url(self) -> str | None:
        """The org's API root, once given or learnt from a token answer."""
        return self._oauth.instance_url

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """Salesforce's 403 ``REQUEST_LIMIT_EXCEEDED``; see :func:`salesforce_throttle`."""
        return salesforce_throttle(response)

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is in the recycle bin (only ``queryAll`` returns such rows)."""
        return raw.get("IsDeleted") is True

    record_format = RecordFormat("Id", "SystemModstamp", parse_timestamp, text_id)

    def soql(self, start: datetime | None) -> str:
        """Return the query for every record with ``SystemModstamp >= start`` (all if ``None``)."""
        where = "" if start is None else f" WHERE SystemModstamp >= {_soql_time(start)}"
        return (
            f"SELECT {', '.join(self.fields)} FROM {self.sobject}{where} "
            f"ORDER BY SystemModstamp, Id"
        )

    def fetch(self, window: Window) -> Iterator[RawPage]:
        """Yield pages of raw records with ``SystemModstamp >= window.start``, each once.

        Raises:
            SourceError: Salesforce could not be read (throttled, refused, failing).
        """
        position: KeysetPosition | None = None
        fruitless = 0
        body = self._first_page(window.start)
        while True:
            # Malformed rows (no key) go on, to be set aside by read(); the rest only when new.
            fresh = _unread(self._keyed(body["records"]), position)
            if fresh:
                fruitless = 0
                position = KeysetPosition.after(position, _last_keys(fresh))
                yield [raw for _, raw in fresh]
            if body["done"]:
                return
            try:
                body = self._next_page(body)
            except PermanentSourceError as error:
                if "INVALID_QUERY_LOCATOR" not in (error.excerpt or ""):
                    raise
                fruitless += 1
                if fruitless > _MAX_FRUITLESS_REQUERIES:
                    raise TransientSourceError(
                        f"salesforce: query locators for {self.sobject} kept expiring before "
                        f"the read could move on; the next cycle tries again",
                        vendor=self.vendor,
                        status_code=error.status_code,
                        excerpt=error.excerpt,
                    ) from None
                # The snapshot is gone: ask again from the last SystemModstamp read (>=, since
                # SOQL has no (SystemModstamp, Id) > (t, id)) and drop the ids already read at t.
                restart = window.start if position is None else position.updated_at
                body = self._first_page(restart)

    def _keyed(self, rows: Sequence[Any]) -> list[_Keyed]:
        """Pair every row with its key; build the record of each readable row from that parse."""
        return [(_key(raw), raw) for raw in rows]

    def _first_page(self, start: datetime | None) -> dict[str, Any]:
        response = self.request(
            "GET",
            self._api,
            params={"q": self.soql(start)},
            headers={
                "Accept": "application/json",
                "Sforce-Query-Options": f"batchSize={self.batch_size}",
            },
        )
        return self._checked_body(response)

    def _next_page(self, body: Mapping[str, Any]) -> dict[str, Any]:
        link = body.get("nextRecordsUrl")
        if not isinstance(link, str) or not link.startswith("/services/data/"):
            raise BadResponseError(
                f"salesforce: a page with done=false has no usable nextRecordsUrl ({link!r:.80})",
                vendor=self.vendor,
            )
        # The link repeats the API path, so it is made absolute, not appended to base_url.
        origin = self.instance_url or str(self._client.base_url)
        url = httpx.URL(origin).join(link)
        response = self.request(
            "GET",
            str(url),
            headers={
                "Accept": "application/json",
                "Sforce-Query-Options": f"batchSize={self.batch_size}",
            },
        )
        return self._checked_body(response)

    def _checked_body(self, response: httpx.Response) -> dict[str, Any]:
        body = self.decode_json(response)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("records"), list)
            or not isinstance(body.get("done"), bool)
        ):
            raise BadResponseError(
                "salesforce: a query answer lacks 'records' or 'done'; the API version or a "
                "proxy in between sent something else",
                vendor=self.vendor,
                status_code=response.status_code,
            )
        return body
