"""Layering at run time: what an import really loads, read from ``sys.modules``.

A host that only shows the status screen, or only imports ``incsync``, should not pay for the
HTTP stack. Each check runs in a fresh interpreter. The static rules (which package may import
which) are import-linter's contracts in ``pyproject.toml``, run by ``make lint``; these tests add
what only running shows: lazy re-exports really stay lazy.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_FORBIDDEN = ("incsync.engine", "incsync.connectors", "httpx", "tenacity")

_PROBE = """
import importlib, importlib.util, json, sys, types

if sys.argv[3] == "alone":
    # Bypass the package's __init__ (which re-exports the engine) to see the module's own needs.
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


def _forbidden_after_import(
    module: str, forbidden: tuple[str, ...] = _FORBIDDEN, *, alone: bool = True
) -> list[str]:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            module,
            json.dumps(forbidden),
            "alone" if alone else "package",
        ],
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


_HTTP_STACK = ("httpx", "httpcore", "tenacity")


@pytest.mark.parametrize("module", ["incsync", "incsync.connectors", "incsync.vendors"])
def test_importing_the_package_loads_no_http_stack(module: str) -> None:
    """``import incsync`` (and the connector and vendor packages) load httpx and tenacity lazily."""
    assert _forbidden_after_import(module, _HTTP_STACK, alone=False) == []


def test_a_lazy_name_is_imported_when_first_used() -> None:
    """Using a connector's name imports its module then, and not before."""
    assert "httpx" in _forbidden_after_import("incsync.connectors.http", _HTTP_STACK, alone=False)


def test_importing_the_package_loads_no_opentelemetry() -> None:
    """``import incsync`` leaves OpenTelemetry unloaded, even where it is installed: the first
    cycle loads it, so a host that never runs one (a status page) never pays for it."""
    loaded = _forbidden_after_import("incsync", ("opentelemetry", "incsync._otel"), alone=False)
    assert loaded == []
    # The same probe sees it when the module that speaks OpenTelemetry is imported.
    assert "opentelemetry.trace" in _forbidden_after_import(
        "incsync._otel", ("opentelemetry",), alone=False
    )
