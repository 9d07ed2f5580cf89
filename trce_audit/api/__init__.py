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
    "list_data": "data",
    "fetch_data": "data",
    "show_prompt_set": "data",
    "add_prompt_set": "data",
    "list_concepts": "data",
    "model_world": "data",
    "render_report": "report",
    "check_gate": "gate",
    "run_audit_spec": "audit",
    # `attack` itself is reached as trce_audit.api.attack.attack: once the submodule is imported the
    # package attribute `attack` is the module, so the function is re-exported as `run_attack`.
    "run_attack": "attack",
    "attack_config": "attack",
    "list_attacks": "attack",
    "generate": "generate",
    "resolve_prompt_set": "generate",
    "evaluate": "evaluate",
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
