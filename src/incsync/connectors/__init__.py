"""Connectors: the toolkit to read a source, and (re-exported) the built-in vendor connectors.

The toolkit lives in submodules:

* :mod:`~incsync.connectors.base`: the base class custom connectors subclass;
* :mod:`~incsync.connectors.keyset`: the one keyset paging driver of sources filtered by time;
* :mod:`~incsync.connectors.http`: the HTTP base class, and the one place httpx errors are
  translated;
* :mod:`~incsync.connectors.auth`: credential flows (API key, bearer token, OAuth2 refresh);
* :mod:`~incsync.connectors.retry`: backoff, ``Retry-After`` and the retry loop;
* :mod:`~incsync.connectors.throttle`: each vendor's throttle signals;
* :mod:`~incsync.connectors.paging`: token and offset paging.

Configurable connectors: a REST API described by plain data (:class:`RestConnector`), CSV / JSON
Lines files (:class:`FileConnector`), and an in-memory source for tests. The vendor connectors
and are re-exported here.

Every name is imported on first use, so ``import incsync.connectors`` (and ``import incsync``)
loads neither httpx nor tenacity until a connector that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from incsync._lazy import lazy_exports

if TYPE_CHECKING:
    from incsync.connectors._rest_config import RestConfig
    from incsync.connectors.auth import (
        ApiKey,
        Auth,
        BearerToken,
        OAuth2Refresh,
        OAuthVendor,
        TokenSet,
    )
    from incsync.connectors.base import BaseConnector, RawPage
    from incsync.connectors.files import FileConnector
    from incsync.connectors.http import HttpConnector, HttpOptions
    from incsync.connectors.keyset import Answer, FromTime, KeysetRead, WholeTick, read_by_keyset
    from incsync.connectors.memory import InMemoryConnector, InMemorySource
    from incsync.connectors.paging import cursor_pages, offset_pages
    from incsync.connectors.rest import RestConnector
    from incsync.connectors.retry import RetryPolicy, Throttle
    from incsync.connectors.sample import generate_invoices, sample_source
    from incsync.connectors.window import WindowLimit

_EXPORTS = {
    "RestConfig": "incsync.connectors._rest_config",
    "ApiKey": "incsync.connectors.auth",
    "Auth": "incsync.connectors.auth",
    "BearerToken": "incsync.connectors.auth",
    "OAuth2Refresh": "incsync.connectors.auth",
    "OAuthVendor": "incsync.connectors.auth",
    "TokenSet": "incsync.connectors.auth",
    "BaseConnector": "incsync.connectors.base",
    "RawPage": "incsync.connectors.base",
    "FileConnector": "incsync.connectors.files",
    "HttpConnector": "incsync.connectors.http",
    "HttpOptions": "incsync.connectors.http",
    "Answer": "incsync.connectors.keyset",
    "FromTime": "incsync.connectors.keyset",
    "KeysetRead": "incsync.connectors.keyset",
    "WholeTick": "incsync.connectors.keyset",
    "read_by_keyset": "incsync.connectors.keyset",
    "InMemoryConnector": "incsync.connectors.memory",
    "InMemorySource": "incsync.connectors.memory",
    "cursor_pages": "incsync.connectors.paging",
    "offset_pages": "incsync.connectors.paging",
    "RestConnector": "incsync.connectors.rest",
    "RetryPolicy": "incsync.connectors.retry",
    "Throttle": "incsync.connectors.retry",
    "generate_invoices": "incsync.connectors.sample",
    "sample_source": "incsync.connectors.sample",
    "WindowLimit": "incsync.connectors.window",
}

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

__all__ = [
    "Answer",
    "ApiKey",
    "Auth",
    "BaseConnector",
    "BearerToken",
    "FileConnector",
    "FromTime",
    "HttpConnector",
    "HttpOptions",
    "InMemoryConnector",
    "InMemorySource",
    "KeysetRead",
    "OAuth2Refresh",
    "OAuthVendor",
    "RawPage",
    "RestConfig",
    "RestConnector",
    "RetryPolicy",
    "Throttle",
    "TokenSet",
    "WholeTick",
    "WindowLimit",
    "cursor_pages",
    "generate_invoices",
    "offset_pages",
    "read_by_keyset",
    "sample_source",
]
