"""Settings shared by the command-line tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's INCSYNC_CONFIG must not leak into in-process runs of main()."""
    monkeypatch.delenv("INCSYNC_CONFIG", raising=False)
