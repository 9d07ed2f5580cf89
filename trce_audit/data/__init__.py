"""Named prompt sets (benchmark files and generated sets), concept lists, loaders and fetching.

Names are re-exported lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Concept": "concepts",
    "load_concept": "concepts",
    "concept_names": "concepts",
    "pocket_concepts": "concepts",
    "read_concept_document": "concepts",
    "load_prompt_set": "sets",
    "ensure_prompt_set": "sets",
    "load_user_csv": "sets",
    "fetch": "downloads",
    "fetch_all": "downloads",
    "data_status": "downloads",
    "PROMPT_SETS": "registry",
    "CONCEPT_FILES": "registry",
    "DEFAULT_SEED": "registry",
    "DEFAULT_GUIDANCE": "registry",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
