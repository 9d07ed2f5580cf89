"""Resolve model specs (pocket | pocket-flux | hub id | local folder | artefact id) to diffusers pipeline folders."""

from .builtin import BUILTIN_MODELS
from .resolve import ModelRef, load_pipeline, resolve_model

__all__ = ["BUILTIN_MODELS", "ModelRef", "load_pipeline", "resolve_model"]
