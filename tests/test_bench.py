"""The benchmarks still run end to end, and their own checks pass, at sizes the suite can afford.

A benchmark is run by hand, on an idle machine, when a figure is wanted: one that a change to the
library broke stays broken until then (the round of ``bench/round.py`` once stopped at start: the
store protocols had grown, and its timing store had not). These runs time nothing; they show that
each benchmark the issues' figures come from still builds its world, syncs it and passes the
checks it makes of what it synced. ``mypy`` checks the rest of ``bench/`` against the library's
types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench import fullsync, telemetry
from bench import round as scheduled_round

pytestmark = pytest.mark.slow


def _written(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return found


def test_the_round_syncs_every_source_and_finds_each_as_its_account_holds_it(
    postgres_conninfo: str, tmp_path: Path
) -> None:
    output = tmp_path / "round.json"

    assert scheduled_round.main(["--sources", "8", "--workers", "4", "--output", str(output)]) == 0

    results = _written(output)
    assert results["checks"]["problems"] == []
    assert results["checks"]["sources_compared_record_by_record"] == 8
    assert results["round"]["outcomes"] == {"completed": 8}


def test_the_telemetry_rounds_run_every_variant_and_apply_every_change(
    postgres_conninfo: str, tmp_path: Path
) -> None:
    output = tmp_path / "telemetry.json"
    variants = ",".join(telemetry.ROUND_VARIANTS)

    status = telemetry.main(
        [
            *("--sources", "6", "--workers", "3", "--sets", "1", "--chunks", "2"),
            *("--cycles", "5", "--round-variants", variants, "--output", str(output)),
        ]
    )

    results = _written(output)
    assert status == 0
    assert results["checks"] == {"problems": [], "passed": True}
    assert set(results["round"]["wall_seconds"]) == set(telemetry.ROUND_VARIANTS)
    assert results["spans_exported_by_sdk_variants"] > 0


def test_a_full_read_runs_in_every_mode_and_reads_every_record(tmp_path: Path) -> None:
    output = tmp_path / "fullsync.json"

    status = fullsync.main(
        [
            *("--vendor", "pipedrive", "--records", "1500", "--latency-ms", "10", "--no-rss"),
            *("--mode", "sequential", "--mode", "pipelined", "--mode", "partitioned"),
            *("--mode", "bare", "--output", str(output)),
        ]
    )

    runs = _written(output)["vendors"]["pipedrive"]["runs"]
    assert status == 0
    assert {run["mode"] for run in runs} == {"sequential", "pipelined", "partitioned", "bare"}
    assert all(run["fake"]["answers"].get("429", 0) == 0 for run in runs)
    engine_runs = [run for run in runs if run["mode"] != "bare"]
    assert all(0 < run["first_page_seconds"] <= run["last_page_seconds"] for run in engine_runs)
    assert all(run["speed_probe_ms_at_start"] > 0 for run in runs)


def test_a_full_reads_steady_pace_leaves_out_its_first_and_last_requests() -> None:
    """The plan and first page before the pages, the count after them, are not the read's pace."""
    # 10 pages of 100 records, one every 0.1 s from 0.5 s on; the read ends 0.3 s after the last.
    durable = [(0.5 + 0.1 * page, 100 * (page + 1)) for page in range(10)]

    figures = fullsync.durable_figures(durable, 1_000, seconds=1.7, ceiling=1_250.0)

    assert figures == {
        "first_page_seconds": 0.5,
        "last_page_seconds": 1.4,
        "after_last_page_seconds": 0.3,
        # From 100 records durable at 0.5 s to 900 at 1.3 s.
        "steady_records_per_second": 1_000,
        "steady_of_ceiling": 0.8,
    }


def test_a_read_of_one_page_has_no_steady_pace() -> None:
    figures = fullsync.durable_figures([(0.4, 50), (0.45, 50)], 50, seconds=0.6, ceiling=None)

    assert figures["steady_records_per_second"] is None
    assert figures["steady_of_ceiling"] is None
    assert figures["after_last_page_seconds"] == 0.15
    assert fullsync.durable_figures([], 0, seconds=0.1, ceiling=None) == {}
