"""Resolve model specs (pocket | pocket-flux | hub id | local folder | artefact id) to diffusers pipeline folders."""

from .resolve import BUILTIN_MODELS, ModelRef, load_pipeline, resolve_model

__all__ = ["BUILTIN_MODELS", "ModelRef", "load_pipeline", "resolve_model"]
