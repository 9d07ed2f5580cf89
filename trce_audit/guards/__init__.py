"""Inference-time guards: erasers that change no weight but the sampler (SLD, SAFREE).

A guarded model is a diffusers folder with a ``trce_audit_guard.json`` beside ``model_index.json``.
That record file, and turning it into a guard, belong to the model folder: trce_audit/models/folder.py
writes and reads it and loads the guard through the registry's ``guard`` kind, so the model layer never
imports this package. ``BUILTIN`` is that kind's table, plain strings, so reading a record imports no
torch until a guard is built.
"""

BUILTIN: dict[str, str] = {
    "sld": "trce_audit.guards.sld:SLDGuard",
    "safree": "trce_audit.guards.safree:SAFREEGuard",
}
