"""Tests that keep "Writing a connector" (docs/connectors.md) a guide to the connector toolkit.

tests/test_docs.py runs the page's examples and their own checks; these check what the page is
for: the first connector it writes builds on ``HttpConnector``, the one a reader should start
from, and its run against the fake goes through the toolkit's retry of a throttled request and
its OAuth2 refresh with a rotated refresh token; the ``BaseConnector`` route comes after it.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from incsync.connectors import BaseConnector, HttpConnector, OAuth2Refresh
from incsync.testing.fakes import FakeGenericRest
from tests.test_docs import ROOT, python_blocks, run_blocks

# The page shows what a reader running it gets: the in-memory connector's one reader.
pytestmark = pytest.mark.one_reader

PAGE = ROOT / "docs" / "connectors.md"


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The namespace the page's runnable examples leave, run in a fresh directory."""
    monkeypatch.chdir(tmp_path)
    runnable = [block for block in python_blocks(PAGE) if block.not_run is None]
    return run_blocks(runnable, "incsync_docs_connectors_guide")


def connector_classes(page: types.ModuleType) -> list[type[BaseConnector]]:
    """The connector classes the page defines, in the order it defines them."""
    return [
        value
        for value in vars(page).values()
        if isinstance(value, type)
        and issubclass(value, BaseConnector)
        and value.__module__ == page.__name__
    ]


def test_the_first_connector_builds_on_http_connector(page: types.ModuleType) -> None:
    """The page leads with an HttpConnector; a connector of another kind follows it."""
    classes = connector_classes(page)
    assert classes, "the page defines no connector"
    assert issubclass(classes[0], HttpConnector), classes[0]
    assert any(not issubclass(cls, HttpConnector) for cls in classes[1:])


def test_the_example_runs_through_the_toolkit_against_the_fake(page: types.ModuleType) -> None:
    """The fake saw a throttled request retried, and refreshes that rotated the refresh token."""
    api = page.api
    assert isinstance(api, FakeGenericRest)
    assert isinstance(page.auth, OAuth2Refresh)
    statuses = [
        (request.method, request.url.split("?")[0], request.status) for request in api.requests
    ]
    throttled = statuses.index(("GET", "https://billing.example/v1/items", 429))
    assert statuses[throttled + 1] == ("GET", "https://billing.example/v1/items", 200)
    refreshes = [status for method, url, status in statuses if url.endswith("/oauth/token")]
    assert refreshes.count(200) >= 2
    assert page.stored["refresh_token"] not in ("rt_granted", "rt_0000")
