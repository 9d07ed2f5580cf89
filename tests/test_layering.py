"""The import contract of tests/layering.py holds on the tree with no exception, and each of its rules can fail."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import layering

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return layering.read_sources(REPO)


@pytest.fixture(scope="module")
def findings(sources) -> list[layering.Finding]:
    return layering.check(sources)


def _added(sources: dict[str, str], path: str, text: str) -> tuple[dict[str, str], int]:
    """The sources with ``text`` appended to ``path`` (created if new), and the line ``text`` ends on."""
    changed = dict(sources)
    changed[path] = sources.get(path, "").rstrip("\n") + "\n\n" + text
    return changed, len(changed[path].splitlines())


def _new(sources: dict[str, str], findings) -> set[str]:
    return {str(f) for f in layering.check(sources)} - {str(f) for f in findings}


def test_the_tree_keeps_the_contract(findings):
    assert not findings, "imports that break the layer contract:\n" + "\n".join(map(str, findings))


def test_function_level_imports(sources):
    deferred = layering.function_level_imports(sources)
    per_module = Counter(where.rsplit(":", 1)[0] for where in deferred)
    table = "\n".join(f"{count:4d}  {path}" for path, count in per_module.most_common())
    assert len(deferred) < layering.FUNCTION_LEVEL_BUDGET, (
        f"{len(deferred)} imports inside functions; they must stay below {layering.FUNCTION_LEVEL_BUDGET}. "
        f"per module:\n{table}")
    light = layering.light_deferred_imports(sources)
    assert not light, "imports inside functions that defer nothing heavy:\n" + "\n".join(map(str, light))


def test_a_deferred_light_import_is_reported(sources):
    changed, line = _added(sources, "trce_audit/store/engine.py", "def f():\n    import json\n    import torch\n")
    assert [str(f) for f in layering.light_deferred_imports(changed)] == [
        f"trce_audit/store/engine.py:{line - 1}: trce_audit.store.engine imports json inside a function, but it "
        f"loads none of {', '.join(sorted(layering.HEAVY))}; import it at the top [light-deferred]"
    ]


def test_a_deferred_import_of_a_module_that_loads_torch_at_its_top_is_allowed():
    """Through a parent package's __init__ too: importing a submodule runs every package above it."""
    synthetic = {
        "trce_audit/__init__.py": "",
        "trce_audit/pocket/__init__.py": "from . import detector\n",
        "trce_audit/pocket/detector.py": "import torch\n",
        "trce_audit/pocket/models.py": "MODEL_DIR = 1\n",
        "trce_audit/models/__init__.py": "",
        "trce_audit/models/resolve.py": (
            "def f():\n    from ..pocket.models import MODEL_DIR\n"
            "def g():\n    from ..models import light\n"),
        "trce_audit/models/light.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
    }
    assert [f.target for f in layering.light_deferred_imports(synthetic)] == ["trce_audit.models.light"]


def test_a_deliberate_upward_import_fails(sources, findings):
    """A deferred import counts. (It also closes a cycle through the store; those findings are the cycle rule's.)"""
    changed, line = _added(sources, "trce_audit/store/engine.py", "def f():\n    from ..api import erasing\n")
    upward = [f for f in _new(changed, findings) if f.endswith("[upward]")]
    assert upward == [
        f"trce_audit/store/engine.py:{line}: trce_audit.store.engine (store, layer 12) imports "
        "trce_audit.api.erasing (api, layer 2), a higher layer [upward]"
    ]


def test_a_deliberate_cycle_is_reported_on_each_edge(sources, findings):
    deferred = "def _digest(value):\n    from .hashing import hash_obj\n"
    changed, errors_line = _added(sources, "trce_audit/errors.py", deferred)
    changed, hashing_line = _added(changed, "trce_audit/hashing.py", "from .errors import ConfigError\n")
    new = _new(changed, findings)
    assert any(f.startswith(f"trce_audit/errors.py:{errors_line}: trce_audit.errors imports trce_audit.hashing, "
                            "on the import cycle") and f.endswith("[cycle]") for f in new), new
    assert any(f.startswith(f"trce_audit/hashing.py:{hashing_line}: trce_audit.hashing imports trce_audit.errors")
               and f.endswith("[cycle]") for f in new), new
    # errors sits below hashing in the ordered kernel, so the deferred import is also an upward one.
    assert f"trce_audit/errors.py:{errors_line}: trce_audit.errors (errors, layer 13.8) imports trce_audit.hashing " \
           "(hashing, layer 13.6), a higher layer [upward]" in new


def test_a_planted_sys_modules_write_in_a_test_is_reported(sources, findings):
    planted = (
        "def test_planted(monkeypatch):\n"
        "    import sys\n"
        "    assert 'torch' not in sys.modules\n"
        "    monkeypatch.setitem(sys.modules, 'trce_audit.fake', object())\n"
        "    sys.modules['trce_audit.fake'] = object()\n"
    )
    changed, line = _added(sources, "tests/test_store.py", planted)
    assert _new(changed, findings) == {
        f"tests/test_store.py:{line - 1}: tests.test_store calls setitem(sys.modules, ...) [sys-modules]",
        f"tests/test_store.py:{line}: tests.test_store indexes sys.modules [sys-modules]",
    }


@pytest.mark.parametrize(("path", "text", "expected"), [
    ("trce_audit/audit/spec.py", "from ..api.nothing import x\n",
     "imports trce_audit.api.nothing, which is no module [missing-module]"),
    ("trce_audit/models/device.py", "from ..errors import NoSuchError\n",
     "imports NoSuchError from trce_audit.errors, which does not serve it [missing-module]"),
    ("trce_audit/metrics/fid.py", "def f():\n    importlib.import_module('trce_audit.reports.render')\n", "[upward]"),
    ("trce_audit/data/sets.py", "from ..execution import local\n", "an independent sibling [independent-siblings]"),
    ("trce_audit/cli/runs.py", "from ..store.engine import mask_url\n", "[cli-allow-list]"),
    ("trce_audit/data/registry.py", "from ..store import PromptRow\n",
     "imports PromptRow from trce_audit.store, not trce_audit.records [canonical-home]"),
    ("trce_audit/lazy.py", "class Finder(importlib.abc.MetaPathFinder): pass\n", "an import finder [import-hook]"),
    ("trce_audit/lazy.py", "def swap(module, cls):\n    module.__class__ = cls\n", "[import-hook]"),
    ("trce_audit/extras.py", "from .errors import ConfigError\n", "a package outside the contract [unlayered]"),
], ids=["missing-module", "missing-name", "upward-import-module", "independent-siblings", "cli-allow-list",
        "canonical-home", "import-finder", "class-swap", "unlayered"])
def test_each_rule_reports_a_planted_violation(sources, findings, path, text, expected):
    """Appended to a real module in memory; the violation sits on the text's last line."""
    changed, line = _added(sources, path, text)
    new = _new(changed, findings)
    assert [f for f in new if f.startswith(f"{path}:{line}: ") and f.endswith(expected)], new


def test_every_edge_of_a_cycle_counts_whatever_kind_of_import_it_is():
    """A frozen synthetic package: a cycle through a deferred and a TYPE_CHECKING import, and a bystander."""
    synthetic = {
        "trce_audit/__init__.py": "",
        "trce_audit/store/__init__.py": "",
        "trce_audit/store/a.py": "from . import b\n",
        "trce_audit/store/b.py": "def f():\n    import importlib\n    importlib.import_module('trce_audit.store.c')\n",
        "trce_audit/store/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import X\n",
        "trce_audit/store/d.py": "from .a import b\n",
    }
    synthetic["trce_audit/store/a.py"] += "X = 1\n"
    assert [str(f) for f in layering.check(synthetic)] == [
        "trce_audit/store/a.py:1: trce_audit.store.a imports trce_audit.store.b, on the import cycle "
        "{trce_audit.store.a, trce_audit.store.b, trce_audit.store.c} [cycle]",
        "trce_audit/store/b.py:3: trce_audit.store.b imports trce_audit.store.c, on the import cycle "
        "{trce_audit.store.a, trce_audit.store.b, trce_audit.store.c} [cycle]",
        "trce_audit/store/c.py:3: trce_audit.store.c imports trce_audit.store.a, on the import cycle "
        "{trce_audit.store.a, trce_audit.store.b, trce_audit.store.c} [cycle]",
    ]


def test_function_level_imports_are_counted_per_statement():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import torch\n"
        "def f():\n"
        "    import torch\n"
        "    from . import a, b\n"
        "class C:\n"
        "    def g(self):\n"
        "        def h():\n"
        "            from .a import X\n"
    )
    assert layering.function_level_imports({"trce_audit/m.py": source}) == [
        "trce_audit/m.py:5", "trce_audit/m.py:6", "trce_audit/m.py:10",
    ]
