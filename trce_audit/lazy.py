"""Lazy re-exports for packages whose submodules import torch: names resolve on first use.

A package that exports a function under the name of one of its submodules (``api.erase``) would see the
import system overwrite that attribute with the submodule once it is imported. ``stable_exports`` keeps the
exported functions in place; ``module_aliases`` keeps old submodule paths importable under new names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` serving ``name`` from ``package.<exports[name]>``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__


class _StableExports(types.ModuleType):
    """A package module on which importing a submodule never replaces an exported name."""

    _stable_names: frozenset = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self)._stable_names and isinstance(value, types.ModuleType):
            return  # the import system binding a submodule: the export keeps the name
        super().__setattr__(name, value)


def stable_exports(package: str, names: set[str] | frozenset) -> None:
    module = sys.modules[package]
    module.__class__ = type("StableExports", (_StableExports,), {"_stable_names": frozenset(names)})


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, aliases: dict[str, str]):
        self.aliases = aliases

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname not in self.aliases:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> types.ModuleType:
        module = importlib.import_module(self.aliases[spec.name])
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # Already executed under its new name; the import system replaced its __spec__ with the alias's.
        module.__spec__ = self._own_spec


def module_aliases(aliases: dict[str, str]) -> None:
    """Make each old dotted module name import the module now named ``aliases[old]`` (the same object)."""
    sys.meta_path.append(_AliasFinder(aliases))
