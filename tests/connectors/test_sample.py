"""Tests for incsync.connectors.sample: generated invoices for the demo, benchmarks and tests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.connectors.memory import iso_timestamp
from incsync.connectors.sample import generate_invoices, invoice, sample_source
from incsync.errors import NaiveDatetimeError
from incsync.timestamps import parse_timestamp

END = datetime(2024, 6, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=90)


def _times(invoices: list[dict[str, Any]]) -> list[datetime]:
    return [parse_timestamp(raw["updated_at"]) for raw in invoices]


def test_same_seed_same_invoices_and_other_seeds_differ() -> None:
    """The same arguments give the same invoices; another seed gives other content."""
    first = list(generate_invoices(200, end=END, seed=7))
    assert first == list(generate_invoices(200, end=END, seed=7))
    other = list(generate_invoices(200, end=END, seed=8))
    assert first != other
    assert _times(first) == _times(other)  # the seed drives content, not timing


def test_invoices_are_the_same_in_another_process() -> None:
    """Generation does not depend on hash randomisation or process state (benchmarks rely on it)."""
    script = (
        "import json, sys; from datetime import datetime, timezone;"
        "from incsync.connectors.sample import generate_invoices;"
        "end = datetime(2024, 6, 1, tzinfo=timezone.utc);"
        "json.dump(list(generate_invoices(50, end=end, seed=11)), sys.stdout)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(result.stdout) == list(generate_invoices(50, end=END, seed=11))


@pytest.mark.parametrize("count", [0, 1, 2, 49, 50, 51, 137, 1_000])
def test_count_invoices_with_sequential_unique_ids(count: int) -> None:
    """Exactly count invoices are yielded, numbered INV-0000001 upwards."""
    invoices = list(generate_invoices(count, end=END))
    assert [raw["id"] for raw in invoices] == [f"INV-{n:07d}" for n in range(1, count + 1)]


def test_invoice_shape() -> None:
    """Each invoice has id, customer, amount, currency, ISO time and two consistent line items."""
    for raw in generate_invoices(300, end=END, seed=3):
        assert set(raw) == {"id", "customer", "amount", "currency", "updated_at", "line_items"}
        assert isinstance(raw["customer"], str)
        assert raw["customer"]
        assert raw["currency"] in {"USD", "EUR", "GBP"}
        assert raw["updated_at"].endswith("Z")
        assert len(raw["line_items"]) == 2
        total = Decimal(0)
        for line in raw["line_items"]:
            assert set(line) == {"product", "quantity", "unit_price"}
            assert 1 <= line["quantity"] <= 20
            assert Decimal(line["unit_price"]).as_tuple().exponent == -2
            total += line["quantity"] * Decimal(line["unit_price"])
        assert Decimal(raw["amount"]) == total
        json.dumps(raw)  # JSON-ready, as a source would send it


def test_invoice_is_deterministic_for_a_seeded_generator() -> None:
    """invoice() draws everything random from the given generator."""
    first = invoice(5, END, random.Random(1))
    assert first == invoice(5, END, random.Random(1))
    assert first["id"] == "INV-0000005"
    assert first["updated_at"] == iso_timestamp(END)


def test_bursts_share_one_timestamp() -> None:
    """Every burst_every-th invoice starts burst_size invoices stamped alike; others differ."""
    invoices = list(generate_invoices(100, end=END, burst_every=10, burst_size=4))
    stamps = [raw["updated_at"] for raw in invoices]
    counts = Counter(stamps)
    for start in (10, 30):  # numbers 10-13 share one time, 14 starts a new one
        burst = stamps[start - 1 : start + 3]
        assert len(set(burst)) == 1
        assert counts[burst[0]] == 4
        assert stamps[start + 3] > burst[0] > stamps[start - 2]
    assert stamps[0] != stamps[1]


def test_no_bursts_means_distinct_timestamps() -> None:
    """With burst_every=0 every invoice has its own, strictly later, timestamp."""
    times = _times(list(generate_invoices(500, end=END, burst_every=0)))
    assert all(earlier < later for earlier, later in pairwise(times))


def test_default_invoices_end_at_end() -> None:
    """With the default arguments the newest invoice is stamped at end (an exact step)."""
    assert max(_times(list(generate_invoices(1_000, end=END)))) == END


def test_the_newest_invoice_is_at_end_for_any_count() -> None:
    """The docstring promises end is the newest invoice's time, not merely an upper bound."""
    assert max(_times(list(generate_invoices(7, end=END)))) == END


def test_naive_end_is_refused() -> None:
    """end must be aware."""
    with pytest.raises(NaiveDatetimeError):
        list(generate_invoices(1, end=datetime(2024, 6, 1)))  # noqa: DTZ001 - the point


@given(
    count=st.integers(min_value=0, max_value=300),
    span_seconds=st.integers(min_value=1, max_value=400 * 86_400),
    burst_every=st.integers(min_value=0, max_value=60),
    burst_size=st.integers(min_value=1, max_value=30),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_invoices_are_in_time_order_within_the_span(
    count: int, span_seconds: int, burst_every: int, burst_size: int, seed: int
) -> None:
    """For any arguments: count invoices, times never decrease, all within [end - span, end]."""
    span = timedelta(seconds=span_seconds)
    invoices = list(
        generate_invoices(
            count, end=END, span=span, burst_every=burst_every, burst_size=burst_size, seed=seed
        )
    )
    times = _times(invoices)
    assert len(invoices) == count
    assert times == sorted(times)
    assert all(END - span <= moment <= END for moment in times)


def test_sample_source_holds_the_generated_invoices() -> None:
    """sample_source puts count generated invoices into an InMemorySource."""
    source = sample_source(120, end=END, seed=4)
    assert len(source) == 120
    assert source.snapshot() == {raw["id"]: raw for raw in generate_invoices(120, end=END, seed=4)}
