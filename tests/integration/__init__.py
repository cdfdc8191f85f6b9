"""Tests that run incsync with real worker processes, brokers and databases."""
