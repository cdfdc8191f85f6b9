"""Benchmarks of incsync's core engine; run them with ``make bench`` (see docs/performance.md)."""
