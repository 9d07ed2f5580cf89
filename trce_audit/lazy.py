"""Lazy re-exports for packages whose submodules import torch: names resolve on first use."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` serving ``name`` from ``package.<exports[name]>``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        # Importing the submodule bound its module object to the package attribute of the same name
        # (api.evaluate, api.erase…); bind the exported function instead so the name stays a function.
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
