"""Re-exports that import their module only when first used (PEP 562).

A package that gathers names from heavy modules (httpx, tenacity, every vendor) names them here,
so that importing the package, or a light module of it, loads none of them: a host that only
renders status never pays for the HTTP stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a module's ``__getattr__`` and ``__dir__`` that import each name on first use.

    Args:
        namespace: The package's ``globals()``; a name once imported is kept there.
        exports: Each public name and the module it comes from.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module attribute hook's own name
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the module attribute hook's own name
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
