"""``python -m incsync.demo`` tells every step, checks it, and leaves a database, a page and a log.

The quick run is the real demo on a twentieth of the data: real fakes on loopback ports, the real
connectors over HTTP, a real SQLite file. One test breaks the product on purpose and expects the
demo to fail; one (slow) runs the default size as ``make demo`` does.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest

from incsync import Phase, SQLiteStore, SyncEngine
from incsync._demo._checks import compare_hubspot, compare_sink, leaks
from incsync._demo._commission import MAPPINGS
from incsync._demo._console import Console, progress_line, result_line
from incsync._demo._world import Scale
from incsync.connectors.base import RawPage
from incsync.connectors.keyset import WholeTick
from incsync.demo import (
    ACME_HUBSPOT,
    ACME_QUICKBOOKS,
    GLOBEX_QUICKBOOKS,
    INITECH_HUBSPOT,
    QUICK_SCALE,
    DemoOutput,
    main,
)
from incsync.errors import ConfigurationError
from incsync.records import Record, Transaction
from incsync.results import CycleProgress, CycleResult, Outcome
from incsync.status import StatusIcon
from incsync.testing.fakes import FakeHubSpot
from incsync.vendors.hubspot import HubSpotConnector
from incsync.views import SYMBOLS

T0 = datetime(2024, 6, 3, tzinfo=timezone.utc)
GREEN = f"{SYMBOLS[StatusIcon.CHECK]} green  Active"
RED = f"{SYMBOLS[StatusIcon.CROSS]} red    Stopped"
RESETTING = f"{SYMBOLS[StatusIcon.REFRESH]} grey   Resetting"
CANCELLED = f"{SYMBOLS[StatusIcon.PAUSE]} grey   Cancelled"
ORANGE = f"{SYMBOLS[StatusIcon.MINUS]} orange No recent changes"


@attrs.frozen
class Run:
    """What one run of the demo printed and returned."""

    code: int
    out: str
    err: str
    output: DemoOutput


def run_demo(directory: Path, *arguments: str) -> Run:
    """Run the demo in this process, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["--output", str(directory), *arguments])
    return Run(code, out.getvalue(), err.getvalue(), DemoOutput.under(directory))


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One quick run of the demo, shared by the tests that read its output."""
    return run_demo(tmp_path_factory.mktemp("demo"), "--quick")


# -- the quick run -------------------------------------------------------------------------------


def test_the_quick_demo_passes_every_check_and_says_where_its_files_are(quick: Run) -> None:
    """Exit status 0, no failed check, a closing count of checks, and the four files named."""
    assert quick.code == 0, quick.err
    assert quick.err == ""
    assert "FAILED" not in quick.out
    assert re.search(r"^All \d+ checks passed in \d+\.\d s\.$", quick.out, re.MULTILINE)
    output = quick.output
    for path in (output.database, output.page, output.log, output.config):
        assert path.is_file()
        assert str(path) in quick.out


def test_each_step_has_one_heading_in_order(quick: Run) -> None:
    """Eleven numbered headings, in order, each once."""
    numbers = re.findall(r"^== (\d+)\. ", quick.out, re.MULTILINE)
    assert numbers == [str(number) for number in range(1, 12)]


def test_the_steps_show_what_the_issue_asks_for(quick: Run) -> None:
    """Full syncs, exact incremental counts, red after five failures, grey, green, orange."""
    out = quick.out
    assert "completed: 1,000 fetched, 1,000 applied" in out  # both full syncs
    assert "1 refresh at the fake's token endpoint" in out
    assert "12 paid, 1 voided, 1 deleted, 24 created in one second" in out
    assert "exactly the 38 changed invoices applied" in out
    assert "exactly the 38 changed deals applied" in out
    assert out.count("failed (5 x 500)") == 5
    assert RED in out
    assert "skipped_stopped" in out
    assert RESETTING in out
    assert "1,024 deals applied again under the new generation" in out
    assert "skipped_cancelled" in out
    assert CANCELLED in out
    assert ORANGE in out
    assert "credentials used is in the database, page, log or config file" in out


def test_progress_is_a_line_every_few_pages_in_a_log(quick: Run) -> None:
    """Standard output is no terminal here: progress comes as whole lines, never ``\\r``; the
    full reads say how many records they hold, as the vendors told."""
    assert "\r" not in quick.out
    assert "\x1b[" not in quick.out  # no colour escapes in a log either
    assert (
        len(
            re.findall(
                r"^    page +\d+ +[\d,]+ records of [\d,]+ +[\d,]+ records/s$", quick.out, re.M
            )
        )
        >= 8
    )


def test_the_last_steps_are_the_incsync_command_as_a_person_runs_it(quick: Run) -> None:
    """Initech's source is synced by `incsync run` (a revoked token: exit 1, twice, then
    stopped), and the final status comes from `incsync status`: the table, the page, the check."""
    config = str(quick.output.config)
    run = f"$ incsync run --all --source {INITECH_HUBSPOT} --config {config}"
    assert quick.out.count(f"\n{run}\n{INITECH_HUBSPOT}: failed: 0 fetched") == 2
    assert "error: AuthError: hubspot: HTTP 401 Unauthorized" in quick.out
    assert f"\n$ incsync status --config {config}\nSOURCE " in quick.out
    assert f"\n$ incsync status --check --config {config}\n" in quick.out
    assert "\nINCSYNC CRITICAL - 1 red, 1 orange, 1 green, 1 grey | " in quick.out


def test_the_status_table_ends_green_grey_orange_and_red(quick: Run) -> None:
    """The command's table has one row per source, in key order, with the colours the steps
    left: one of each."""
    table = quick.out[quick.out.index("\nSOURCE ") + 1 :].splitlines()
    rows = [(row.split()[0], row) for row in table[1:5]]
    keys = [ACME_HUBSPOT, ACME_QUICKBOOKS, GLOBEX_QUICKBOOKS, INITECH_HUBSPOT]
    assert [key for key, _ in rows] == keys
    for (_, row), shown in zip(rows, (GREEN, CANCELLED, ORANGE, RED), strict=True):
        assert shown in row


def test_the_database_holds_what_the_steps_did(quick: Run) -> None:
    """Phases and transaction counts as the story left them (tombstones count as transactions)."""
    with SQLiteStore(quick.output.database) as store:
        states = {state.key: state for state in store.list_states()}
        counts = {key: store.count_transactions(key) for key in states}
    assert states[ACME_HUBSPOT].phase is Phase.ACTIVE
    assert states[ACME_HUBSPOT].generation == 1
    assert states[ACME_QUICKBOOKS].phase is Phase.CANCELLED
    assert states[GLOBEX_QUICKBOOKS].phase is Phase.ACTIVE
    assert states[INITECH_HUBSPOT].phase is Phase.STOPPED
    assert counts == {
        ACME_HUBSPOT: 1_024,
        ACME_QUICKBOOKS: 1_024,
        GLOBEX_QUICKBOOKS: 100,
        INITECH_HUBSPOT: 0,
    }


def test_the_demo_ends_with_each_salespersons_month_from_the_mapped_rows(quick: Run) -> None:
    """The last step adds up won deals and paid invoices per salesperson from the mapped rows,
    checked against the raw payloads; the store kept a mapped row for every stored record."""
    last = quick.out[quick.out.index("== 11. What a commission engine sees") :]
    header = re.search(r"^  salesperson +deals won +won \(USD\)", last, re.MULTILINE)
    assert header is not None
    people = re.findall(r"^  ([A-Z][a-z]+ [A-Z][a-z]+) +\d+ ", last, re.MULTILINE)
    assert people
    assert set(people) <= {"Maya Okafor", "Jonas Weber", "Priya Raman", "Luis Ortega"}
    assert "ok: the same figures added up again from the stored raw payloads" in last
    with SQLiteStore(quick.output.database, mappings=MAPPINGS) as store:
        engine = SyncEngine(store)
        for key in (ACME_HUBSPOT, ACME_QUICKBOOKS, GLOBEX_QUICKBOOKS):
            mapped = {row.transaction.record_id for row in engine.mapped_transactions(key)}
            live = {t.record.id for t in store.transactions(key) if not t.record.deleted}
            assert live
            assert live <= mapped


def test_the_page_is_standalone_html_with_every_source(quick: Run) -> None:
    """The page needs nothing from the network and shows each source with its colour."""
    page = quick.output.page.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in page
    for key in (ACME_HUBSPOT, ACME_QUICKBOOKS, GLOBEX_QUICKBOOKS, INITECH_HUBSPOT):
        assert key in page
    assert all(color in page for color in ("green", "grey", "orange", "red"))


def test_the_log_records_the_failures_the_terminal_only_summarises(quick: Run) -> None:
    """incsync's warnings go to the log file, not to the terminal."""
    log = quick.output.log.read_text(encoding="utf-8")
    assert log.count("cycle failed: TransientSourceError") == 5
    assert "stopped after 5 failed cycles" in log
    assert "WARNING" not in quick.out


# -- failing loudly ------------------------------------------------------------------------------


def test_a_connector_that_loses_records_fails_the_demo_with_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HubSpot connector that drops a millisecond's burst fails a check: exit 1, said why."""

    def lose_the_burst(self: HubSpotConnector, step: WholeTick) -> Iterator[RawPage]:
        return iter(())

    monkeypatch.setattr(HubSpotConnector, "_read_tick", lose_the_burst)
    failed = run_demo(tmp_path, "--quick")
    assert failed.code == 1
    assert "FAILED: all 1,000 deals applied (950 applied)" in failed.out
    assert "The demo stopped: the demo's check failed: all 1,000 deals applied" in failed.err
    assert "== 4." not in failed.out  # it stops at the first failed check


def test_a_scale_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    """``--scale 0`` is a usage error (exit 2); ``Scale.of`` says what it needs."""
    with pytest.raises(SystemExit) as exit_info, redirect_stderr(io.StringIO()) as err:
        main(["--output", str(tmp_path), "--scale", "0"])
    assert exit_info.value.code == 2
    assert "--scale must be a positive number" in err.getvalue()
    for factor in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigurationError, match="positive"):
            Scale.of(factor)
    with pytest.raises(ConfigurationError, match="burst"):
        Scale(invoices=10, invoice_burst=11)
    with pytest.raises(ConfigurationError, match="at least 1"):
        Scale(changes=0)


# -- the parts -----------------------------------------------------------------------------------


def test_a_small_scale_keeps_every_burst_larger_than_a_page() -> None:
    """Even the quick run reads a QuickBooks second by offset and a HubSpot millisecond by id."""
    quick = Scale.of(QUICK_SCALE)
    assert quick.invoice_burst > quick.page_size
    assert quick.deal_burst > 200
    assert Scale.of(1) == Scale()


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Claim to be a terminal."""
        return True


def progress(pages: int) -> CycleProgress:
    """Progress after ``pages`` pages of 100 records, a second each."""
    return CycleProgress("s", pages, pages * 100, pages * 100, timedelta(seconds=pages))


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    """Every page rewrites the line; the next output starts on a fresh line."""
    stream = Terminal()
    console = Console(stream)
    report = console.progress(every=5)
    for pages in (1, 2, 3):
        report(progress(pages))
    console.say("done")
    assert stream.getvalue() == "".join(f"\r{progress_line(progress(n))}" for n in (1, 2, 3)) + (
        "\ndone\n"
    )


def test_progress_in_a_log_is_one_line_every_n_pages() -> None:
    """Off a terminal, only every n-th page prints, as a whole line."""
    stream = io.StringIO()
    report = Console(stream).progress(every=2)
    for pages in range(1, 6):
        report(progress(pages))
    assert stream.getvalue().splitlines() == [
        progress_line(progress(2)),
        progress_line(progress(4)),
    ]
    assert progress_line(progress(4)) == "    page    4       400 records       100 records/s"


def test_a_stream_without_unicode_gets_ascii_symbols() -> None:
    """A console uses the status symbols only where its stream can encode them."""
    ascii_stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    console = Console(ascii_stream)
    assert console.unicode is False
    console.say("Last change … 2 hours ago")
    ascii_stream.seek(0)
    assert ascii_stream.read() == "Last change ? 2 hours ago\n"
    assert Console(io.TextIOWrapper(io.BytesIO(), encoding="utf-8")).unicode is True


def test_a_failed_cycle_is_told_with_its_error_on_a_second_line() -> None:
    """The error class and message follow the counts."""
    failed = CycleResult("s", Outcome.FAILED, error="HTTP 500", error_class="TransientSourceError")
    assert result_line(failed).splitlines() == [
        "failed: 0 fetched, 0 applied, 0 already applied, 0 set aside; 0 pages in 0.00 s",
        "error: TransientSourceError: HTTP 500",
    ]


def transaction(record_id: str, payload: dict[str, int], *, deleted: bool = False) -> Transaction:
    """A stored transaction."""
    return Transaction("s", Record(record_id, T0, payload, deleted=deleted), 0)


def test_compare_sink_finds_missing_extra_stale_and_wrong_kinds() -> None:
    """Every way a sink can differ from the source is reported, by id."""
    held = [
        transaction("1", {"v": 1}),  # right
        transaction("2", {"v": 1}),  # stale: the source has v 2
        transaction("3", {"v": 1}, deleted=True),  # a tombstone for a live record
        transaction("5", {}, deleted=False),  # deleted at the source, live here
        transaction("9", {"v": 1}),  # never at the source
    ]
    live = {"1": {"v": 1}, "2": {"v": 2}, "3": {"v": 1}, "4": {"v": 1}}
    comparison = compare_sink(held, live, {"5", "6"}, lambda stored, truth: stored == truth)
    assert not comparison.ok
    assert comparison.stale == ("2",)
    assert comparison.extra == ("9",)
    assert sorted(comparison.missing) == ["3", "4", "5", "6"]
    assert comparison.problems() == "4 missing (4, 6, 3, ...); 1 extra (9); 1 stale (2)"
    exact = compare_sink([transaction("1", {"v": 1})], {"1": {"v": 1}}, (), lambda a, b: a == b)
    assert exact.ok
    assert exact.problems() == ""


def test_a_deal_stored_without_properties_is_stale() -> None:
    """A HubSpot payload whose properties are missing never matches the portal's deal."""
    fake = FakeHubSpot()
    [deal] = fake.load("deals", [T0], {"dealname": "Renewal"})
    held = [Transaction("s", Record(deal, T0, {"id": deal}), 0)]
    assert compare_hubspot(held, fake).stale == (deal,)


def test_leaks_names_the_files_that_hold_a_secret(tmp_path: Path) -> None:
    """Only files containing a secret are named; missing files and empty secrets are ignored."""
    clean, dirty = tmp_path / "clean.db", tmp_path / "dirty.log"
    clean.write_bytes(b"nothing to see")
    dirty.write_bytes(b"Authorization: Bearer pat-na1-SECRET")
    paths = [clean, dirty, tmp_path / "missing"]
    assert leaks(paths, ["pat-na1-SECRET", ""]) == ["dirty.log"]
    assert leaks(paths, ["other"]) == []


# -- make demo -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_make_demo_runs_the_default_size_as_a_command(tmp_path: Path) -> None:
    """``python -m incsync.demo`` at the default size (20,000 invoices and deals) exits 0."""
    finished = subprocess.run(
        [sys.executable, "-m", "incsync.demo", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-2_000:] + finished.stderr
    assert "all 20,000 invoices applied" in finished.stdout
    assert "all 20,000 deals applied" in finished.stdout
    assert re.search(r"^All \d+ checks passed", finished.stdout, re.MULTILINE)
    assert (tmp_path / "status.html").is_file()
