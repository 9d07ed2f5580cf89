"""Generate images for a model and a prompt set, with the settings that shape them, and resolve a
prompt-set reference to a stored set (orchestration.generation_runs, orchestration.prompt_sets)."""

from __future__ import annotations

from ..generation import GenerationSettings
from ..orchestration.generation_runs import generate
from ..orchestration.prompt_sets import resolve_prompt_set

__all__ = ["GenerationSettings", "generate", "resolve_prompt_set"]
