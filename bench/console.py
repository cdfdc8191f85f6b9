"""Benchmark of the web console over 10,000 sources on PostgreSQL: the first page, served and drawn.

Run ``python -m bench.console`` from the project root (``--quick`` for 1,000 sources). It fills a
PostgreSQL store (the server the tests use, ``INCSYNC_TEST_POSTGRES``; a schema of its own,
dropped at the end) with 10,000 sources in the mix of ``bench.status`` and 24 cycle entries each,
then measures, best of several rounds:

1. baseline: what ``incsync status`` needs before it draws anything, every source's state read
   and classified (``list_states`` and ``status_of`` for each);
2. the console's first page (``GET /``) in process, from a console just made (nothing
   classified yet): the states read and classified, then filter, sort, page, the page's history
   summaries and the HTML;
3. the first page from a console that served one before: nothing changed since, or 10 sources
   changed (cancelled or resumed, untimed) before each page, as cycles' ends change them; only
   those are classified again;
4. a poll of the open list answered ``304 Not Modified`` (what each viewer costs per second);
5. in Debian's Chromium (Playwright), served by uvicorn on loopback from a child process: the
   first contentful paint of the console's first page, against the paint of the static status
   page of 50 of the sources (``incsync.views.render_html_page``) from the same server.

The measures 1 to 4 take turns within each round; each keeps its best round. Figures are ratios
to the baseline of the same process (times in ms beside them), printed and written to
``bench/console-results.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from bench.core import CONNINFO, load_average, machine
from bench.history_status import entries
from bench.status import NOW, _best, make_states
from incsync.actions import Action, ActionEntry
from incsync.history import SUMMARY_CYCLES
from incsync.integrations.web import create_app
from incsync.state import SourceState
from incsync.status import status_of
from incsync.stores import _postgres_sql as sql
from incsync.stores._postgres_rows import cycle_row, state_params
from incsync.stores.postgres import PostgresStore
from incsync.views import render_html_page

RESULTS = Path(__file__).resolve().parent / "console-results.json"
CHANGED = 10  # sources changed before each "changed" first page
SOURCES = 10_000
ROUNDS = 9
PAINTS = 7
CHROMIUM = "/usr/bin/chromium"


@contextmanager
def postgres_store(states: Sequence[SourceState]) -> Iterator[PostgresStore]:
    """A PostgreSQL store in a schema of its own holding the states and their history."""
    schema = f"incsync_bench_{secrets.token_hex(4)}"
    keys = [state.key for state in states]
    try:
        with PostgresStore(CONNINFO, schema=schema, max_size=4) as store:
            store.migrate()
            with psycopg.connect(CONNINFO, autocommit=True) as connection:
                columns = ", ".join(sql.STATE_COLUMNS)
                copy = sql.render(f"COPY {{schema}}.sources ({columns}) FROM STDIN", schema)
                with connection.cursor().copy(copy) as writing:
                    for state in states:
                        params = state_params(state)
                        writing.write_row([params[column] for column in sql.STATE_COLUMNS])
                columns = ", ".join(sql.CYCLE_COLUMNS)
                copy = sql.render(f"COPY {{schema}}.cycles ({columns}) FROM STDIN", schema)
                with connection.cursor().copy(copy) as writing:
                    for entry in entries(keys, SUMMARY_CYCLES):
                        writing.write_row(cycle_row(entry))
                connection.execute(sql.render("VACUUM ANALYZE {schema}.sources", schema))
                connection.execute(sql.render("VACUUM ANALYZE {schema}.cycles", schema))
            yield store
    finally:
        with psycopg.connect(CONNINFO, autocommit=True) as connection:
            connection.execute(sql.render("DROP SCHEMA IF EXISTS {schema} CASCADE", schema))


def _host(store: PostgresStore) -> Starlette:
    """The console, and the static status page of its first 50 sources, side by side."""
    listed = sorted(
        ((state.key, status_of(state, now=NOW)) for state in store.list_states()),
        key=lambda row: row[0],
    )
    static = render_html_page(listed[:50])
    return Starlette(
        routes=[
            Route("/static-page", lambda _request: HTMLResponse(static)),
            Mount("/console", create_app(store, clock=lambda: NOW)),
        ]
    )


def _serve(schema: str, port: int) -> None:
    """Serve the host in this (child) process, over a store of its own on the same schema."""
    with PostgresStore(CONNINFO, schema=schema, max_size=4) as store:
        uvicorn.run(_host(store), host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def served_apart(schema: str) -> Iterator[str]:
    """Serve the host from a child process, as a server runs apart from its browsers.

    In this process, the server's thread would share the interpreter with Playwright's, whose
    event loop wakes for every event of the page and slows the request it waits for.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = multiprocessing.get_context("spawn").Process(target=_serve, args=(schema, port))
    child.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base_url + "/static-page", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or not child.is_alive():
                    raise RuntimeError("the console did not start") from None
                time.sleep(0.1)
        yield base_url
    finally:
        child.terminate()
        child.join(timeout=10)


def paints(base_url: str, rounds: int) -> dict[str, float]:
    """The best first contentful paint of the console's page and of the static page, in ms."""
    from playwright.sync_api import sync_playwright

    script = "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime ?? null"
    best = {"console": float("inf"), "static": float("inf")}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for _ in range(rounds):
                for name, path in (("console", "/console/"), ("static", "/static-page")):
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.goto(base_url + path, wait_until="load")
                    # Polled from here: the console's CSP forbids the eval wait_for_function uses.
                    painted = None
                    for _ in range(500):
                        painted = page.evaluate(script)
                        if painted is not None:
                            break
                        time.sleep(0.01)
                    if painted is None:
                        raise RuntimeError(f"{name}: no first contentful paint")
                    best[name] = min(best[name], float(painted))
                    page.close()
                    # Let the server finish what the closed page asked (its first poll).
                    time.sleep(1.0)
        finally:
            browser.close()
    return best


def _change(store: PostgresStore, keys: Sequence[str], number: int) -> None:
    """Cancel the sources (even rounds) or resume them (odd ones): each is a new state."""
    action = Action.CANCEL if number % 2 == 0 else Action.RESUME
    for key in keys:
        store.act(ActionEntry(source_key=key, action=action, actor="bench", at=NOW))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 sources instead of 10,000")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds; the best is kept")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args(argv)
    count = SOURCES // 10 if args.quick else SOURCES
    states = make_states(count)
    load_start = load_average()
    with postgres_store(states) as store:
        fresh: list[TestClient] = []

        def new_console(_number: int) -> None:
            fresh[:] = [TestClient(create_app(store, clock=lambda: NOW), base_url="http://bench")]

        client = TestClient(create_app(store, clock=lambda: NOW), base_url="http://bench")

        def baseline() -> object:
            return [status_of(state, now=NOW) for state in store.list_states()]

        def page(of: TestClient) -> object:
            response = of.get("/")
            assert response.status_code == 200
            return response

        # Sources in the middle of the list by key: not on the first page, where their history
        # summaries would be read again too.
        changed = sorted(state.key for state in states)[count // 2 : count // 2 + CHANGED]

        # The measures take turns within each round, so that a burst of load from other work on
        # the machine slows each of them alike, not one measure's rounds alone.
        best: dict[str, float] = {}

        def timed(name: str, function: Callable[[], object]) -> None:
            best[name] = min(best.get(name, float("inf")), _best(function, 1))

        page(client)
        for number in range(args.rounds):
            _change(store, changed, number)
            timed("changed", lambda: page(client))
            timed("unchanged", lambda: page(client))
            tag = client.get("/rows").headers["etag"]

            def unchanged_poll(tag: str = tag) -> object:
                response = client.get("/rows", headers={"if-none-match": tag})
                assert response.status_code == 304
                return response

            timed("poll", unchanged_poll)
            timed("baseline", baseline)
            new_console(number)
            timed("cold", lambda: page(fresh[0]))
        _change(store, changed, 1)  # all resumed, if an even round cancelled them last
        baseline_seconds, cold_seconds = best["baseline"], best["cold"]
        warm_seconds, changed_seconds, poll_seconds = (
            best["unchanged"],
            best["changed"],
            best["poll"],
        )
        with served_apart(store.schema) as base_url:
            painted = paints(base_url, PAINTS)

    def ratio(seconds: float) -> float:
        return round(seconds / baseline_seconds, 2)

    figures = {
        "baseline_ms": round(baseline_seconds * 1e3, 1),
        "first_page_cold_ms": round(cold_seconds * 1e3, 1),
        "first_page_cold_ratio": ratio(cold_seconds),
        "first_page_unchanged_ms": round(warm_seconds * 1e3, 1),
        "first_page_unchanged_ratio": ratio(warm_seconds),
        "first_page_changed_ms": round(changed_seconds * 1e3, 1),
        "first_page_changed_ratio": ratio(changed_seconds),
        "changed_sources": CHANGED,
        "unchanged_poll_ms": round(poll_seconds * 1e3, 1),
        "unchanged_poll_ratio": ratio(poll_seconds),
        "paint_console_ms": round(painted["console"], 1),
        "paint_static_ms": round(painted["static"], 1),
        "paint_ratio": round(painted["console"] / painted["static"], 2),
    }
    results = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": {"start": load_start, "end": load_average()},
        "sources": count,
        "rounds": args.rounds,
        "paint_rounds": PAINTS,
        **figures,
    }
    print(f"console over {count:,} sources on PostgreSQL, best of {args.rounds} rounds")
    print(f"  baseline (read and classify every source) {figures['baseline_ms']:8.1f} ms")
    for name, label in (
        ("first_page_cold", "first page, console just made"),
        ("first_page_unchanged", "first page, nothing changed"),
        ("first_page_changed", f"first page, {CHANGED} sources changed"),
    ):
        print(
            f"  {label:40s} {figures[name + '_ms']:8.1f} ms"
            f"   {figures[name + '_ratio']:5.2f}x baseline"
        )
    print(
        f"  poll answered 304                        {figures['unchanged_poll_ms']:8.1f} ms"
        f"   {figures['unchanged_poll_ratio']:5.2f}x baseline"
    )
    print(
        f"  first contentful paint, console          {figures['paint_console_ms']:8.1f} ms"
        f"   {figures['paint_ratio']:5.2f}x the static page's {figures['paint_static_ms']} ms"
    )
    print(f"load average {results['load_average']}")
    if not args.no_write:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
