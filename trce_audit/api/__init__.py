"""The Python API: the functions the CLI calls and users script against.

Each area lives in its own module (``trce_audit.api.runs``, ``.data``, ``.generate`` …); names are
re-exported here lazily so that importing trce_audit.api imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "list_runs": "runs",
    "show_run": "runs",
    "list_models": "models",
    "resolve": "models",
    "erase": "erase",
    "erase_concept": "erase",
    "list_erasers": "erase",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trce_audit.api' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(_EXPORTS)
