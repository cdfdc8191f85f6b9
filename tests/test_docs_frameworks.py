"""Tests that run the Flask and Django examples of docs/status.md with their templates.

Those examples need a template file on disk and, for Django, configured settings, which a plain
run of the page's blocks cannot give them; they are marked not-run there and run here instead:
after the page's other examples, in the same namespace, with the page's own template written to
``templates/imports.html`` and a SQLite file holding three real sources. Like every page's examples
(tests/test_docs.py), they run twice in a row in the same directory, and both runs must serve.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from incsync import SQLiteStore, SyncEngine
from incsync.connectors import InMemoryConnector, sample_source
from incsync.errors import TransientSourceError
from incsync.testing import ManualClock
from tests.helpers import django_settings
from tests.test_docs import ROOT, CodeBlock, code_blocks, example_after, run_blocks

PAGE = ROOT / "docs" / "status.md"


def page_blocks() -> list[CodeBlock]:
    return code_blocks(PAGE.read_text(encoding="utf-8"), PAGE)


def prepare_database() -> None:
    """Write ``incsync.db`` with a synced source, a cancelled one and a failing one."""
    now = datetime.now(timezone.utc)
    clock = ManualClock(now - timedelta(minutes=30))
    with SQLiteStore("incsync.db") as store:
        engine = SyncEngine(store, clock=clock)
        engine.run_cycle("acme/invoices", InMemoryConnector(sample_source(50, end=now)))
        engine.run_cycle("globex/deals", InMemoryConnector(sample_source(5, end=now)))
        engine.cancel("globex/deals")

        def outage(_page: int) -> None:
            raise TransientSourceError("the vendor answered 500 <script>alert(1)</script>")

        broken = InMemoryConnector(sample_source(5, end=now), before_page=outage)
        for _ in range(6):
            engine.run_cycle("initech/payments", broken)


def run_page_twice_with(
    examples: list[CodeBlock], template: CodeBlock, module_name: str
) -> list[dict[str, object]]:
    """Run the page's runnable blocks, then ``examples``, with ``template`` and a database ready.

    They run twice, each time in a new namespace, in the same directory; both are returned.
    """
    Path("templates").mkdir()
    Path("templates", "imports.html").write_text(template.source, encoding="utf-8")
    prepare_database()
    runnable = [b for b in page_blocks() if b.is_python and b.not_run is None]
    runnable += examples
    return [dict(vars(run_blocks(runnable, module_name))) for _ in range(2)]


def close_stores(namespaces: list[dict[str, object]]) -> None:
    for namespace in namespaces:
        namespace["store"].close()  # type: ignore[attr-defined]


def check_page(html: str) -> None:
    """One row per source with the colour its state calls for, each row naming its source."""
    rows = re.findall(
        r'<tr data-color="(\w+)" data-reason="[\w-]+">\s*<th scope="row">([^<]+)</th>', html
    )
    assert {name: color for color, name in rows} == {
        "acme/invoices": "green",
        "globex/deals": "grey",
        "initech/payments": "red",
    }
    assert len(rows) == 3
    assert "<script>" not in html, "the vendor's error text must be escaped"
    assert re.search(
        r'<time datetime="\d{4}-\d\d-\d\dT[^"]+"\s+title="[^"]+">[^<]+ ago</time>', html
    )


def test_the_flask_example_serves_the_status_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Flask view renders the Jinja template: a row and a colour per source, text escaped."""
    monkeypatch.chdir(tmp_path)
    namespaces = run_page_twice_with(
        [example_after(PAGE, "### Flask and Jinja", "python")],
        example_after(PAGE, "### Flask and Jinja", "jinja"),
        "incsync_docs_status_flask",
    )
    try:
        for namespace in namespaces:
            response = namespace["app"].test_client().get("/imports")  # type: ignore[attr-defined]
            assert response.status_code == 200
            check_page(response.get_data(as_text=True))
    finally:
        close_stores(namespaces)


def test_the_django_example_renders_the_status_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Django view renders the Django template with the same rows and colours."""
    from django.test import RequestFactory

    monkeypatch.chdir(tmp_path)
    with django_settings(
        ALLOWED_HOSTS=["testserver"],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": ["templates"],  # relative: each test's own working directory
            }
        ],
    ):
        namespaces = run_page_twice_with(
            # The Django example reuses the Flask one's store and policy, as the page reads in
            # order.
            [
                example_after(PAGE, "### Flask and Jinja", "python"),
                example_after(PAGE, "### Django", "python"),
            ],
            example_after(PAGE, "### Django", "html"),
            "incsync_docs_status_django",
        )
        try:
            for namespace in namespaces:
                view = namespace["imports"]
                response = view(RequestFactory().get("/imports"))  # type: ignore[operator]
                assert response.status_code == 200
                check_page(response.content.decode())
        finally:
            close_stores(namespaces)
