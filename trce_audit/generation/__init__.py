"""Batched, seeded, resumable image generation.

``GenerationSettings`` is importable without torch; the engine (``trce_audit.generation.engine``) and
the run driver (``trce_audit.generation.runner``) import torch and diffusers on use.
"""

from .settings import SCHEDULERS, GenerationSettings

__all__ = ["GenerationSettings", "SCHEDULERS"]
