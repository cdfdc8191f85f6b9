"""Test-suite settings shared by every test module."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Two cores shared with a browser, subprocesses and SQLite make wall-clock limits flaky: correctness
# here never depends on how fast an example runs. In CI the examples are derived from each test's
# name, so a red build is reproducible and never caused by a newly drawn input.
settings.register_profile(
    "incsync",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
    print_blob=True,
)
settings.load_profile("incsync")
