"""Named prompt sets (benchmark files and generated sets), concept lists, loaders and fetching.

Names are re-exported lazily so that importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Concept": "concepts",
    "load_concept": "concepts",
    "concept_names": "concepts",
    "pocket_concepts": "concepts",
    "read_concept_document": "concepts",
    "load_prompt_set": "sets",
    "ensure_prompt_set": "sets",
    "load_user_csv": "sets",
    "fetch": "fetch",
    "fetch_all": "fetch",
    "data_status": "fetch",
    "PROMPT_SETS": "registry",
    "CONCEPT_FILES": "registry",
    "DEFAULT_SEED": "registry",
    "DEFAULT_GUIDANCE": "registry",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trce_audit.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(_EXPORTS)
