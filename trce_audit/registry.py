"""Lazy plugin registry: kind -> name -> "module:Class".

Built-in plugins are listed in each component package's ``BUILTIN`` table (plain strings, so listing
them imports no torch); third parties add theirs through the entry-point groups below. The plugin id
is its registered name, which is also the class attribute ``name``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata

from .errors import PluginError

KINDS: dict[str, tuple[str, str]] = {
    # kind: (package holding BUILTIN, entry-point group)
    "eraser": ("trce_audit.erasers", "trce_audit.erasers"),
    "attack": ("trce_audit.attacks", "trce_audit.attacks"),
    "metric": ("trce_audit.metrics", "trce_audit.metrics"),
    "guard": ("trce_audit.guards", "trce_audit.guards"),
    "family": ("trce_audit.models.families", "trce_audit.families"),
}


@dataclass(frozen=True)
class PluginSpec:
    kind: str
    name: str
    target: str  # "module:Class"
    source: str  # "builtin" or the distribution that provides the entry point


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}")


def specs(kind: str) -> dict[str, PluginSpec]:
    """Every registered plugin of a kind, built-ins first; an entry point cannot shadow a built-in."""
    _check_kind(kind)
    package, group = KINDS[kind]
    builtin: dict[str, str] = getattr(importlib.import_module(package), "BUILTIN", {})
    found = {name: PluginSpec(kind, name, target, "builtin") for name, target in builtin.items()}
    for entry in metadata.entry_points(group=group):
        if entry.name not in found:
            dist = entry.dist.name if entry.dist else "entry point"
            found[entry.name] = PluginSpec(kind, entry.name, entry.value, dist)
    return found


def names(kind: str) -> list[str]:
    return sorted(specs(kind))


def load(kind: str, name: str) -> type:
    """Import and return the plugin class registered as ``name``."""
    available = specs(kind)
    if name not in available:
        raise PluginError(f"unknown {kind} {name!r}; available: {', '.join(sorted(available)) or 'none'}")
    target = available[name].target
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{kind} {name!r} ({target}) failed to load: {exc}") from exc
    declared = getattr(obj, "name", name)
    if declared != name:
        raise PluginError(f"{kind} {name!r} resolves to a class named {declared!r}; ids must match")
    return obj
