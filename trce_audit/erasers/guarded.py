"""Erasers that change no weight: the saved folder is the parent's, plus the guard it carries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .base import EraseContext, Eraser

if TYPE_CHECKING:
    from ..data.concepts import Concept


class GuardEraser(Eraser):
    """Base of SLD and SAFREE: ``guard_config`` resolves the config against the concept."""

    guard_version: ClassVar[str] = "1"

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        context.progress(f"{self.name}: guard", 1, 1)
        return {"guard": self.name, **self.guard_config(concept, context)}, {}

    def guard_config(self, concept: "Concept", context: EraseContext) -> dict[str, Any]:
        raise NotImplementedError

    def guard_record(self, concept: "Concept", context: EraseContext) -> dict[str, Any]:
        return {"name": self.name, "version": self.guard_version, "config": self.guard_config(concept, context)}
