"""The Python API: the functions the CLI calls and users script against.

Each area lives in its own module (``trce_audit.api.runs``, ``.data``, ``.generate`` …); names are
re-exported here lazily so that importing trce_audit.api imports no torch.
"""

from __future__ import annotations

from ..lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
