"""FileConnector over real files: after every cycle the sink equals what the files hold."""

from __future__ import annotations

import csv
import gc
import json
import os
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from incsync import SyncEngine, SyncPolicy
from incsync.connectors._file_marks import FileMark, SeenFile, plan_read
from incsync.connectors.files import FileConnector
from incsync.cursor import Window
from incsync.results import CycleResult, Outcome
from incsync.testing import InMemoryStore, ManualClock
from incsync.timestamps import UTC, parse_timestamp
from tests.helpers import Store, transactions_by_id

KEY = "exports"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
HEADER = ["id", "name", "amount", "updated_at", "deleted"]
OLD = 1_700_000_000  # an mtime long before any read, so equal mtimes can be trusted


def row(number: int, updated: datetime, *, name: str = "item", deleted: str = "") -> list[str]:
    """One CSV row."""
    return [f"c{number:06d}", f"{name} {number}", str(number % 97), _iso(updated), deleted]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_csv(path: Path, rows: list[list[str]], *, mode: str = "w", mtime: int = OLD) -> None:
    """Write (or append) rows, with the header when the file is new; set an old mtime."""
    new = mode == "w" or not path.exists()
    with path.open(mode, encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(HEADER)
        writer.writerows(rows)
    os.utime(path, (mtime, mtime))


def csv_truth(*paths: Path) -> tuple[dict[str, dict[str, str]], set[str]]:
    """The latest row per id across ``paths`` (read in order) and the ids deleted at the end."""
    latest: dict[str, dict[str, str]] = {}
    for path in paths:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for found in csv.DictReader(handle):
                held = latest.get(found["id"])
                if held is None or found["updated_at"] >= held["updated_at"]:
                    latest[found["id"]] = found
    live = {key: value for key, value in latest.items() if value["deleted"] != "yes"}
    return live, {key for key, value in latest.items() if value["deleted"] == "yes"}


def assert_matches(store: Store, *paths: Path) -> None:
    """The sink holds each id's latest row, and a tombstone for each deleted one."""
    live, deleted = csv_truth(*paths)
    held = transactions_by_id(store, KEY)
    assert {k: dict(t.record.payload) for k, t in held.items() if not t.record.deleted} == live
    assert {k for k, t in held.items() if t.record.deleted} == deleted


def connector(path: Path, **options: Any) -> FileConnector:
    """A CSV connector on ``path`` with the test files' columns."""
    return FileConnector(
        path,
        id_column="id",
        updated_at_column="updated_at",
        tombstone_column="deleted",
        tombstone_values=("yes",),
        **options,
    )


def engine(store: Store, clock: ManualClock) -> SyncEngine:
    """An engine on a manual clock, one-minute safety lag."""
    return SyncEngine(store, clock=clock, policy=SyncPolicy(safety_lag=timedelta(minutes=1)))


def run(sync: SyncEngine, source: FileConnector) -> CycleResult:
    """Run one cycle; it must complete."""
    result = sync.run_cycle(KEY, source)
    assert result.outcome is Outcome.COMPLETED, result.error
    return result


def test_a_folder_of_csv_files_with_appends_rewrites_and_rotation(
    tmp_path: Path, store: Store
) -> None:
    """Cycles over a folder read new files, appended rows only, rewritten files again.

    An unchanged file is skipped, an appended one is read from where the last read stopped, a
    rewritten (new inode) one is read whole and filtered by updated_at; deletes are tombstones.
    """
    clock = ManualClock(NOW)
    folder = tmp_path / "exports"
    folder.mkdir()
    a, b = folder / "a.csv", folder / "b.csv"
    write_csv(a, [row(n, T0 + timedelta(seconds=n)) for n in range(300)])
    write_csv(b, [row(n, T0 + timedelta(seconds=n)) for n in range(300, 500)])
    sync, source = engine(store, clock), connector(folder, page_size=128)
    first = run(sync, source)
    assert (first.fetched, first.applied) == (500, 500)
    assert_matches(store, a, b)

    clock.advance(timedelta(hours=1))
    later = NOW + timedelta(minutes=10)
    write_csv(
        a,
        [row(n, later, name="changed") for n in range(5)] + [row(7, later, deleted="yes")],
        mode="a",
        mtime=OLD + 10,
    )
    second = run(sync, source)
    assert (second.fetched, second.applied) == (6, 6)  # b skipped, a read from its old end
    assert_matches(store, a, b)

    clock.advance(timedelta(hours=1))
    rotated = folder / "b.csv.1"
    b.rename(rotated)
    write_csv(b, [row(n, later + timedelta(minutes=30)) for n in (310, 320)], mtime=OLD + 20)
    third = run(sync, source)
    assert (third.fetched, third.applied) == (2, 2)
    assert_matches(store, a, rotated, b)


def test_a_rewritten_file_is_read_again_and_filtered_by_updated_at(
    tmp_path: Path, store: Store
) -> None:
    """A file rewritten in place (same inode, new content) is read whole; old rows are filtered."""
    clock = ManualClock(NOW)
    path = tmp_path / "export.csv"
    write_csv(path, [row(n, T0 + timedelta(seconds=n)) for n in range(100)])
    sync, source = engine(store, clock), connector(path)
    run(sync, source)
    clock.advance(timedelta(hours=1))
    rows = [row(n, T0 + timedelta(seconds=n)) for n in range(100)]
    rows[40] = row(40, NOW + timedelta(minutes=5), name="fixed")
    rows[41] = row(41, NOW + timedelta(minutes=5), deleted="yes")
    inode = path.stat().st_ino
    write_csv(path, rows, mtime=OLD + 5)
    assert path.stat().st_ino == inode
    second = run(sync, source)
    # The window is inclusive: the row at the cursor's second is read again, and dropped.
    assert (second.fetched, second.applied, second.already_applied) == (3, 2, 1)
    assert_matches(store, path)


def test_a_file_changed_without_its_mtime_moving_far_is_read_whole(tmp_path: Path) -> None:
    """A file modified within the mtime granularity of its last read is never skipped."""
    path = tmp_path / "export.csv"
    write_csv(path, [row(n, T0) for n in range(3)], mtime=int(datetime.now(UTC).timestamp()))
    source = connector(path)
    assert sum(len(p.records) for p in source.read(Window())) == 3
    with path.open("r+b") as handle:  # same size, same mtime, other content
        handle.seek(path.stat().st_size - 30)
        handle.write(b"X")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    pages = list(source.read(Window(start=T0)))
    assert sum(len(p.records) + len(p.rejected) for p in pages) == 3


def test_a_read_not_applied_is_not_remembered(tmp_path: Path) -> None:
    """A file is skipped only after the engine asked for the page after its last one."""
    path = tmp_path / "export.csv"
    write_csv(path, [row(n, T0) for n in range(10)])
    source = connector(path, page_size=4)
    pages = source.read(Window())
    next(pages)
    next(pages)
    pages.close()  # the cycle failed while the file's last page was out
    again = list(source.read(Window(start=T0)))
    assert sum(len(p.records) for p in again) == 10
    assert list(source.read(Window(start=T0))) == []  # now it was read through and applied


def test_bad_rows_are_set_aside_with_file_and_line_and_the_cycle_goes_on(tmp_path: Path) -> None:
    """Missing ids, bad times, wrong column counts and invalid utf-8 are rejected by line."""
    path = tmp_path / "export.csv"
    lines = [
        ",".join(HEADER),
        "c1,one,1,2024-05-01T00:00:00Z,",
        ",no id,1,2024-05-01T00:00:00Z,",
        "c3,bad time,1,yesterday,",
        "c4,too,many,columns,2024-05-01T00:00:00Z,",
        'c5,"multi',
        'line",1,2024-05-01T00:00:00Z,',
        "c6,naive,1,2024-05-01 00:00:00,",
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"c7,\xff\xfe,1,2024-05-01T00:00:00Z,\n")
    store = InMemoryStore()
    result = run(engine(store, ManualClock(NOW)), connector(path))
    assert (result.applied, result.rejected) == (2, 5)
    reasons = sorted(rejected.reason for rejected in store.list_rejected(KEY))
    assert reasons == [
        "export.csv line 3: field 'id' must be a non-empty string or integer, got ''",
        "export.csv line 4: updated_at 'yesterday' is not an ISO 8601 timestamp",
        "export.csv line 5: expected 5 columns, got 6",
        "export.csv line 8: field 'updated_at' has no timezone: '2024-05-01 00:00:00'",
        "export.csv line 9: invalid utf-8",
    ]
    assert transactions_by_id(store, KEY)["c5"].record.payload["name"] == "multi\nline"


def test_a_header_without_the_id_column_fails_the_cycle(tmp_path: Path) -> None:
    """A header lacking a configured column fails the cycle with a message naming both."""
    path = tmp_path / "export.csv"
    path.write_text("key,updated_at\nc1,2024-05-01T00:00:00Z\n", encoding="utf-8")
    result = engine(InMemoryStore(), ManualClock(NOW)).run_cycle(KEY, connector(path))
    assert result.outcome is Outcome.FAILED
    assert result.error_class == "PermanentSourceError"
    assert "export.csv line 1: the header has no column 'id'" in str(result.error)


def test_json_lines_with_a_bom_bad_lines_and_epoch_times(tmp_path: Path) -> None:
    """JSON Lines with a byte-order mark and epoch-ms times; bad lines are rejected by number."""
    path = tmp_path / "events.jsonl"
    good = [
        {"key": n, "ts": 1_714_521_600_000 + n, "gone": n == 2, "data": {"n": n}} for n in range(4)
    ]
    text = "\n".join(json.dumps(item) for item in good)
    text += '\n{"key": 9, "ts": 1\n[1, 2]\n\n{"key": "", "ts": 5}\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    source = FileConnector(
        path,
        id_column="key",
        updated_at_column="ts",
        timestamp_format="epoch_ms",
        tombstone_column="gone",
    )
    store = InMemoryStore()
    result = run(engine(store, ManualClock(NOW)), source)
    assert (result.applied, result.rejected) == (4, 3)
    held = transactions_by_id(store, KEY)
    assert {key: dict(t.record.payload) for key, t in held.items()} == {
        str(item["key"]): item for item in good
    }
    assert {key for key, t in held.items() if t.record.deleted} == {"2"}
    reasons = sorted(rejected.reason for rejected in store.list_rejected(KEY))
    assert reasons == [
        "events.jsonl line 5: not JSON (JSONDecodeError)",
        "events.jsonl line 6: expected a JSON object, got list",
        "events.jsonl line 8: field 'key' must be a non-empty string or integer, got ''",
    ]


def test_a_half_written_last_line_is_read_again_once_complete(tmp_path: Path) -> None:
    """A last line without its newline is read but not remembered, so its completion is read."""
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"id": "a", "t": "2024-05-01T00:00:00Z", "v": 1}\n{"id": "b", "t": "2024-05-01T00:00:0'
    )
    os.utime(path, (OLD, OLD))
    source = FileConnector(path, id_column="id", updated_at_column="t")
    first = list(source.read(Window()))
    assert [len(first[0].records), len(first[0].rejected)] == [1, 1]
    with path.open("a", encoding="utf-8") as handle:
        handle.write('1Z", "v": 2}\n')
    os.utime(path, (OLD + 1, OLD + 1))
    second = list(source.read(Window(start=T0)))
    assert [record.id for record in second[0].records] == ["b"]


def test_the_manifest_survives_a_new_connector(tmp_path: Path) -> None:
    """With manifest_path, a new connector (a restart) still skips unchanged files."""
    path = tmp_path / "export.csv"
    manifest = tmp_path / "manifest.json"
    write_csv(path, [row(n, T0) for n in range(10)])
    assert sum(len(p.records) for p in connector(path, manifest_path=manifest).read(Window())) == 10
    restarted = connector(path, manifest_path=manifest)
    assert list(restarted.read(Window(start=T0))) == []
    assert sum(len(p.records) for p in restarted.read(Window())) == 10  # a full read reads all
    manifest.write_text("{not json", encoding="utf-8")
    assert (
        sum(len(p.records) for p in connector(path, manifest_path=manifest).read(Window(start=T0)))
        == 10
    )


def test_skip_unchanged_off_reads_every_file_every_time(tmp_path: Path) -> None:
    """With skip_unchanged=False the connector relies on the updated_at column alone."""
    path = tmp_path / "export.csv"
    write_csv(path, [row(n, T0 + timedelta(seconds=n)) for n in range(10)])
    source = connector(path, skip_unchanged=False)
    list(source.read(Window()))
    again = list(source.read(Window(start=T0 + timedelta(seconds=5))))
    assert [r.id for r in again[0].records] == [f"c{n:06d}" for n in range(5, 10)]


def resident_bytes() -> int:
    """This process's resident memory, from /proc (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_a_200k_row_file_is_streamed_in_flat_memory(tmp_path: Path) -> None:
    """Reading 200,000 rows grows resident memory by a few pages' worth, not by the file's.

    Holding every record at once would take well over 100 MB (a record with its payload dict is
    about 1 KB); the read may grow the process by at most 25 MB.
    """
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(HEADER) + "\n")
        for n in range(200_000):
            stamp = T0 + timedelta(seconds=n)
            handle.write(f"c{n:06d},item {n},{n % 97},{stamp:%Y-%m-%dT%H:%M:%S}Z,\n")
    source = connector(path, page_size=1_000)
    gc.collect()
    before = highest = resident_bytes()
    count = 0
    for page in source.read(Window()):
        count += len(page.records)
        highest = max(highest, resident_bytes())
    assert count == 200_000
    assert highest - before < 25_000_000, highest - before


def test_memory_does_not_grow_with_the_number_of_rows(tmp_path: Path) -> None:
    """Traced peak memory while reading 10,000 rows is that of reading 1,000: a page's worth."""
    peaks = []
    for count in (1_000, 10_000):
        path = tmp_path / f"rows-{count}.csv"
        write_csv(path, [row(n, T0 + timedelta(seconds=n)) for n in range(count)])
        source = connector(path, page_size=500)
        tracemalloc.start()
        try:
            for _page in source.read(Window()):
                pass
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.5, peaks


MARK = FileMark(1, 2, 100, 10**18, 10**18 + 5 * 10**9, "h", "t", 3)


@pytest.mark.parametrize(
    ("seen", "window", "plan"),
    [
        (SeenFile(1, 2, 100, 10**18, "h", "t"), Window(start=T0), "skip"),
        (SeenFile(1, 2, 150, 10**18 + 1, "h", "t"), Window(start=T0), "append"),
        (SeenFile(1, 2, 100, 10**18 + 1, "h", "t"), Window(start=T0), "append"),
        (SeenFile(1, 2, 100, 10**18, "h", "t"), Window(), "whole"),
        (SeenFile(1, 3, 100, 10**18, "h", "t"), Window(start=T0), "whole"),
        (SeenFile(1, 2, 99, 10**18, "h", "t"), Window(start=T0), "whole"),
        (SeenFile(1, 2, 100, 10**18, "H", "t"), Window(start=T0), "whole"),
        (SeenFile(1, 2, 150, 10**18, "h", "T"), Window(start=T0), "whole"),
        (None, Window(start=T0), "whole"),
    ],
)
def test_plan_read(seen: SeenFile | None, window: Window, plan: str) -> None:
    """Skip only an unchanged file, append only after an unchanged prefix; else read whole."""
    assert plan_read(MARK if seen is not None else None, seen, window) == plan


def test_plan_read_distrusts_an_mtime_close_to_the_read() -> None:
    """An mtime within the granularity of the read proves nothing: the file is read whole."""
    racy = FileMark(1, 2, 100, 10**18, 10**18 + 10**9, "h", "t", 3)
    assert plan_read(racy, SeenFile(1, 2, 100, 10**18, "h", "t"), Window(start=T0)) == "whole"


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    """Page size, lookback, delimiter and timestamp format are checked at construction."""
    from incsync.errors import ConfigurationError

    for options in (
        {"page_size": 0},
        {"lookback": timedelta(seconds=-1)},
        {"delimiter": ";;"},
        {"timestamp_format": "epoch"},
    ):
        with pytest.raises(ConfigurationError):
            connector(tmp_path, **options)


def test_a_missing_path_fails_the_cycle(tmp_path: Path) -> None:
    """A path that does not exist fails the cycle, naming it."""
    result = engine(InMemoryStore(), ManualClock(NOW)).run_cycle(
        KEY, connector(tmp_path / "nowhere")
    )
    assert result.outcome is Outcome.FAILED
    assert "nowhere does not exist" in str(result.error)


def test_strftime_times_are_read_as_utc(tmp_path: Path) -> None:
    """A strftime pattern without %z reads times as UTC."""
    path = tmp_path / "export.csv"
    path.write_text("id;when\na;01/05/2024 10:00\n", encoding="utf-8")
    source = FileConnector(
        path,
        id_column="id",
        updated_at_column="when",
        timestamp_format="%d/%m/%Y %H:%M",
        delimiter=";",
    )
    records = [r for page in source.read(Window()) for r in page.records]
    assert records[0].updated_at == parse_timestamp("2024-05-01T10:00:00Z")


def test_marks_of_files_that_are_gone_are_forgotten(tmp_path: Path) -> None:
    """A file removed from the folder is dropped from the memory (and the manifest)."""
    manifest = tmp_path / "manifest.json"
    folder = tmp_path / "exports"
    folder.mkdir()
    for name in ("a.csv", "b.csv"):
        write_csv(folder / name, [row(1, T0)])
    source = connector(folder, manifest_path=manifest)
    list(source.read(Window()))
    assert len(json.loads(manifest.read_text(encoding="utf-8"))) == 2
    (folder / "a.csv").unlink()
    list(source.read(Window(start=T0)))
    assert list(json.loads(manifest.read_text(encoding="utf-8"))) == [
        str((folder / "b.csv").resolve())
    ]
