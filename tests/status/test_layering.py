"""Layering: rendering status loads neither the engine, the connectors, httpx nor tenacity.

A host that only shows the status screen should not pay for the HTTP stack. Each check runs in a
fresh interpreter and reads ``sys.modules`` after one import. The package's ``__init__`` (which
re-exports everything) is bypassed by registering an empty ``incsync`` package first, so what is
measured is what the module itself needs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_FORBIDDEN = ("incsync.engine", "incsync.connectors", "httpx", "tenacity")

_PROBE = """
import importlib, importlib.util, json, sys, types

spec = importlib.util.find_spec("incsync")
package = types.ModuleType("incsync")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["incsync"] = package
importlib.import_module(sys.argv[1])
forbidden = tuple(json.loads(sys.argv[2]))
print(json.dumps(sorted(
    name for name in sys.modules
    if any(name == root or name.startswith(root + ".") for root in forbidden)
)))
"""


def _forbidden_after_import(module: str) -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, module, json.dumps(_FORBIDDEN)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(completed.stdout)
    return loaded


@pytest.mark.parametrize(
    "module", ["incsync.status", "incsync.humanize", "incsync.views", "incsync.policy"]
)
def test_status_modules_import_no_engine_connector_or_http_stack(module: str) -> None:
    """The status modules and the engine's policy load none of the I/O layers."""
    assert _forbidden_after_import(module) == []


def test_the_probe_sees_what_an_import_loads() -> None:
    """The same probe reports the engine when the engine is what is imported."""
    assert "incsync.engine" in _forbidden_after_import("incsync.engine")
