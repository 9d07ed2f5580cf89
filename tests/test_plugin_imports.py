"""Loading a plugin class stays torch-free: `trce-audit attacks`, `trce-audit erasers` and audit-spec
validation load every eraser and attack class and build its default config, so a plugin module that
imports torch, diffusers or transformers at top would make each of them pay for it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "diffusers", "transformers")


def _loaded(kind: str) -> dict:
    """Per plugin of ``kind``, in registry order: the heavy modules imported once it and its default
    config were loaded (in one fresh interpreter, so each entry includes the plugins before it).

    The "sd" world's defaults only: UCE's and RECE's "pocket" defaults read the pocket world's concept
    names, and the pocket package imports torch with its models."""
    code = f"""
        import json, sys
        from trce_audit import registry

        found = {{}}
        for name in registry.names({kind!r}):
            registry.load({kind!r}, name).Config.for_world("sd")
            found[name] = [m for m in {HEAVY!r} if m in sys.modules]
        print(json.dumps(found))
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["eraser", "attack"])
def test_loading_every_plugin_imports_no_torch(kind):
    found = _loaded(kind)
    assert found, f"no {kind} is registered"
    first = next(((name, heavy) for name, heavy in found.items() if heavy), None)
    assert first is None, f"loading {kind} {first[0]!r} imported {', '.join(first[1])}"
