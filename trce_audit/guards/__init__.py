"""Inference-time guards: erasers that change no weight but the sampler (SLD, SAFREE).

A guarded model is a diffusers folder with a ``trce_audit_guard.json`` beside ``model_index.json``;
``BUILTIN`` maps guard names to their classes lazily, so reading the file imports no torch.
"""

BUILTIN: dict[str, str] = {
    "sld": "trce_audit.guards.sld:SLDGuard",
    "safree": "trce_audit.guards.safree:SAFREEGuard",
}
