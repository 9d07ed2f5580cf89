"""Erase a concept from a model (orchestration.erase_runs), and list the erasers that can."""

from __future__ import annotations

from typing import Any

from .. import registry
from ..orchestration.erase_runs import erase, erase_concept

__all__ = ["erase", "erase_concept", "list_erasers"]


def list_erasers() -> list[dict[str, Any]]:
    """Registered erasers with their default config for each world (imports each plugin class)."""
    rows = []
    for name in registry.names("eraser"):
        cls = registry.load("eraser", name)
        rows.append(
            {
                "name": name,
                "version": cls.version,
                "description": getattr(cls, "description", ""),
                "defaults": {world: cls.Config.for_world(world).as_dict() for world in ("sd", "pocket")},
            }
        )
    return rows
