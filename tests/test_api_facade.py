"""The API is a facade of plain names: every exported name is a function or class whatever has been
imported, no exported name is also a submodule's (so nothing needs import machinery to keep it), the old
module paths are gone, and importing the facade imports no torch."""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import trce_audit.api as api
import trce_audit.data as data


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_importing_the_facade_imports_no_torch():
    result = _python(
        """
        import sys
        import trce_audit.api
        print("HEAVY=" + ",".join(m for m in ("torch", "diffusers", "transformers", "ray") if m in sys.modules))
        """
    )
    assert result.stdout.strip().splitlines()[-1] == "HEAVY=", result.stderr


def test_every_name_stays_a_function_or_class_once_every_submodule_is_imported():
    result = _python(
        """
        import importlib, inspect, json, pkgutil
        import trce_audit.api as api
        for info in pkgutil.iter_modules(api.__path__):
            importlib.import_module(f"trce_audit.api.{info.name}")
        print(json.dumps([n for n in api.__all__ if not (inspect.isfunction(getattr(api, n)) or inspect.isclass(getattr(api, n)))]))
        """
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], result.stderr


@pytest.mark.parametrize("package", [api, data], ids=lambda p: p.__name__)
def test_no_exported_name_is_a_submodule(package):
    submodules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    assert not submodules & set(package.__all__)
    for name in package.__all__:  # each served from the module the lazy table names
        assert getattr(package, name) is not None


@pytest.mark.parametrize("old", ["erase", "evaluate", "generate", "attack", "doctor", "erase_job", "attack_job", "judging"])
def test_old_module_paths_are_gone(old):
    assert importlib.util.find_spec(f"trce_audit.api.{old}") is None


def test_the_runs_are_the_orchestration_layer_s_own_functions():
    from trce_audit.orchestration import attack_runs, erase_runs, eval_runs, generation_runs

    assert (api.erase, api.evaluate, api.generate, api.attack) == (
        erase_runs.erase, eval_runs.evaluate, generation_runs.generate, attack_runs.attack)
