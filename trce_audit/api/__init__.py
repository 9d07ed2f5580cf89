"""The Python API: the functions the CLI calls and users script against, a typed facade over
trce_audit.orchestration (the runs) and the read-only store views.

Each area lives in its own module (``trce_audit.api.erasing``, ``.evaluation``, ``.generation``,
``.attacking`` …); its names are re-exported here lazily, so that importing trce_audit.api imports no
torch. No exported name is also the name of a submodule: ``trce_audit.api.attack`` is always the
function (its module is ``attacking``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "list_runs": "runs",
    "show_run": "runs",
    "list_models": "models",
    "resolve": "models",
    "model_world": "models",
    "default_model": "models",
    "list_data": "data",
    "fetch_data": "data",
    "show_prompt_set": "data",
    "add_prompt_set": "data",
    "list_concepts": "data",
    "render_report": "report",
    "parse_run_ids": "report",
    "check_gate": "gate",
    "write_junit": "gate",
    "format_percent": "gate",
    "run_audit_spec": "audit",
    "attack": "attacking",
    "attack_config": "attacking",
    "list_attacks": "attacking",
    "BelowPaperBudgetWarning": "attacking",
    "generate": "generation",
    "resolve_prompt_set": "generation",
    "GenerationSettings": "generation",
    "evaluate": "evaluation",
    "erase": "erasing",
    "erase_concept": "erasing",
    "list_erasers": "erasing",
    "ExecutorOptions": "executors",
    "executor_options": "executors",
    "open_executor": "executors",
    "open_store": "session",
    "Store": "session",
    "doctor": "installation",
}

if TYPE_CHECKING:  # what type checkers and editors see; at run time each name loads on first use
    from .attacking import BelowPaperBudgetWarning, attack, attack_config, list_attacks
    from .audit import run_audit_spec
    from .data import add_prompt_set, fetch_data, list_concepts, list_data, show_prompt_set
    from .erasing import erase, erase_concept, list_erasers
    from .evaluation import evaluate
    from .executors import ExecutorOptions, executor_options, open_executor
    from .gate import check_gate, format_percent, write_junit
    from .generation import GenerationSettings, generate, resolve_prompt_set
    from .installation import doctor
    from .models import default_model, list_models, model_world, resolve
    from .report import parse_run_ids, render_report
    from .runs import list_runs, show_run
    from .session import Store, open_store

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
