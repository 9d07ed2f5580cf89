"""The Python API: the functions the CLI calls and users script against.

Each area lives in its own module (``trce_audit.api.runs``, ``.data``, ``.generation`` …); names are
re-exported here lazily so that importing trce_audit.api imports no torch. The exported names are stable:
``trce_audit.api.erase`` is the function whatever has been imported (the modules are named for their
area, ``erasing``, ``evaluation``, ``generation``; the old module paths ``trce_audit.api.erase`` etc. still
import, as aliases of the new modules).
"""

from __future__ import annotations

from ..lazy import lazy_exports, module_aliases, stable_exports

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
    # `attack` itself is reached as trce_audit.api.attack.attack (the module keeps its name, which other
    # code patches by path), so the function is re-exported as `run_attack`.
    "run_attack": "attack",
    "attack_config": "attack",
    "list_attacks": "attack",
    "generate": "generation",
    "resolve_prompt_set": "generation",
    "evaluate": "evaluation",
    "erase": "erasing",
    "erase_concept": "erasing",
    "list_erasers": "erasing",
}
# Old module paths, kept importable: `from trce_audit.api.erase import erase` still works.
_RENAMED = {"erase": "erasing", "evaluate": "evaluation", "generate": "generation"}

__getattr__ = lazy_exports(__name__, _EXPORTS)
stable_exports(__name__, set(_EXPORTS))
module_aliases({f"{__name__}.{old}": f"{__name__}.{new}" for old, new in _RENAMED.items()})

__all__ = sorted(_EXPORTS)
