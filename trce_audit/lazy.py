"""Lazy re-exports for packages whose submodules import torch or other heavy libraries: each name
resolves on first use, so importing the package stays cheap.

A package that uses this exports no name that is also one of its submodules' names (the import system
would overwrite such an attribute with the submodule once it is imported).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` serving ``name`` from ``package.<exports[name]>``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
