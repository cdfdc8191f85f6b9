"""Tests pinning incsync's public API: the exported names and the shape of every public module."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from types import ModuleType

import pytest

import incsync

EXPORTED = [
    "ApplyResult",
    "AtomicPageStore",
    "AuthError",
    "BadRecordError",
    "BadResponseError",
    "BaseConnector",
    "Checkpoint",
    "Clock",
    "ConfigurationError",
    "Connector",
    "CountCheck",
    "Cursor",
    "CycleEntry",
    "CycleProgress",
    "CycleResult",
    "DueSource",
    "ErrorInfo",
    "GenerationChangedError",
    "HistoryRetention",
    "HistorySummary",
    "InMemoryStore",
    "IncsyncError",
    "Lease",
    "LeaseLostError",
    "NaiveDatetimeError",
    "Outcome",
    "Page",
    "PermanentSourceError",
    "Phase",
    "ProgressCallback",
    "RateLimitedError",
    "Record",
    "RejectedRecord",
    "ResultCapError",
    "SQLiteStore",
    "SkipReason",
    "SourceError",
    "SourcePlan",
    "SourceState",
    "SourceStatus",
    "StaleWriteError",
    "StateConflictError",
    "StateStore",
    "StatusColor",
    "StatusIcon",
    "StatusNote",
    "StatusPolicy",
    "StatusReason",
    "StoreError",
    "StoreTokenKeeper",
    "SyncEngine",
    "SyncPolicy",
    "TimeText",
    "TokenKeeper",
    "TokenStore",
    "Transaction",
    "TransactionSink",
    "TransientSourceError",
    "Window",
    "__version__",
    "classify_status",
    "due_sources",
    "exact_time",
    "relative_time",
    "run_due",
    "status_of",
    "statuses_of",
    "summarize",
    "time_text",
]


def _public_module_names() -> list[str]:
    """Every importable module of the package whose dotted path has no ``_``-prefixed part."""
    names = [
        info.name
        for info in pkgutil.walk_packages(incsync.__path__, prefix="incsync.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return sorted(["incsync", *names])


PUBLIC_MODULES = _public_module_names()


def test_exported_names_are_pinned() -> None:
    """incsync.__all__ is exactly the reviewed list; adding or removing a name is a decision."""
    assert sorted(incsync.__all__) == EXPORTED


def test_exported_names_are_unique() -> None:
    """__all__ names nothing twice (its order is the linter's, RUF022)."""
    assert len(incsync.__all__) == len(set(incsync.__all__))


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_is_importable(name: str) -> None:
    """``from incsync import <name>`` works for every exported name."""
    namespace: dict[str, object] = {}
    exec(f"from incsync import {name}", namespace)
    assert namespace[name] is getattr(incsync, name)


def test_star_import_gives_exactly_the_exported_names() -> None:
    """``from incsync import *`` binds exactly __all__."""
    namespace: dict[str, object] = {}
    exec("from incsync import *", namespace)
    assert sorted(name for name in namespace if name != "__builtins__") == EXPORTED


def test_version_matches_the_package_metadata() -> None:
    """incsync.__version__ agrees with the installed distribution's version."""
    assert incsync.__version__ == importlib.metadata.version("incsync")


def test_the_public_modules_are_discovered() -> None:
    """The walk finds the package's public modules and skips private ones."""
    assert {"incsync", "incsync.state", "incsync.connectors.memory", "incsync.stores"} <= set(
        PUBLIC_MODULES
    )
    assert "incsync.stores._base" not in PUBLIC_MODULES


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_module_has_a_docstring_and_all(name: str) -> None:
    """Each public module documents itself and declares __all__ naming only what it defines."""
    module: ModuleType = importlib.import_module(name)
    assert module.__doc__ is not None
    assert module.__doc__.strip(), f"{name} has an empty docstring"
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__ list"
    # A package may be only a folder for its modules (incsync.integrations): it exports nothing.
    assert exported or hasattr(module, "__path__"), f"{name}.__all__ is empty"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    missing = [symbol for symbol in exported if not hasattr(module, symbol)]
    assert missing == [], f"{name}.__all__ names what the module lacks: {missing}"
