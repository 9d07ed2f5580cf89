"""What trce-audit adds to a diffusers pipeline folder: the world marker and the guard record.

``trce_audit.json`` says which concept world the model lives in and, for an erased model, how it was
erased; ``trce_audit_guard.json`` names the inference-time guard (SLD, SAFREE) that samples it. Both are
inside the folder, so its fingerprint, and with it every run identity, covers them. Their bytes are part
of that fingerprint: the JSON layout here must not change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import ModelError, PluginError

WORLD_MARKER = "trce_audit.json"
GUARD_FILE = "trce_audit_guard.json"


def is_pipeline_folder(path: Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def read_marker(folder: Path) -> dict[str, Any]:
    """The folder's world marker; {} when it has none or the file is not a JSON object."""
    path = Path(folder) / WORLD_MARKER
    try:
        found = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the JSON parser goes
        found = {}
    return found if isinstance(found, dict) else {}


def write_marker(folder: Path, marker: dict[str, Any]) -> None:
    # default=str: erasure records carry values such as paths that JSON has no type for.
    (Path(folder) / WORLD_MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True, default=str))


def world_of(folder: Path) -> str:
    """``sd`` unless the marker says otherwise: a folder from elsewhere is a Stable Diffusion model."""
    world = read_marker(folder).get("world", "sd")
    return world if isinstance(world, str) else "sd"  # a marker whose world is no name says nothing


def write_guard_record(folder: Path, record: dict[str, Any]) -> None:
    (Path(folder) / GUARD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))


def read_guard_record(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / GUARD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise ModelError(f"{path} names no guard")
    if record.get("config") is not None and not isinstance(record["config"], dict):
        raise ModelError(f"{path}: 'config' must be a table of the guard's settings")
    return record


def load_guard(folder: Path) -> Any:
    """The guard (a ``trce_audit.guards.base.Guard``) a model folder carries, or None for a plain model.

    Typed ``Any`` because guards sit above models: naming the class here, even for a type checker, would
    be an upward import.
    """
    record = read_guard_record(folder)
    if record is None:
        return None
    path = Path(folder) / GUARD_FILE
    name = record["name"]
    try:
        cls = registry.load("guard", name)
    except PluginError as exc:
        known = registry.specs("guard")
        if name not in known:
            raise ModelError(f"{path} names the unknown guard {name!r}; known: {', '.join(known)}") from None
        raise ModelError(f"{path}: {exc}") from exc
    if str(record.get("version")) != cls.version:
        raise ModelError(f"{path} was written by {cls.name} version {record.get('version')}, this is version {cls.version}")
    return cls(record.get("config") or {})


def save_erased_pipeline(pipe, out_dir: Path, parent_dir: Path | None, meta: dict[str, Any], guard: dict[str, Any] | None = None) -> Path:
    """Write the pipeline as a safetensors diffusers folder that ``from_pretrained`` loads.

    The parent's world marker is carried over (an erased pocket model stays in the pocket world) with the
    erasure record added to it; an inference-time eraser's guard record goes beside it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A fast tokenizer saves the truncation and padding of its last call: clear them, so that the
    # folder's bytes do not depend on what the eraser encoded last (or on which executor it ran).
    # SDXL, SD3 and FLUX carry a second (and third) tokenizer, T5's padded to the run's length.
    for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        backend = getattr(getattr(pipe, name, None), "_tokenizer", None)
        if backend is not None and hasattr(backend, "no_truncation"):
            backend.no_truncation()
            backend.no_padding()
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    marker = read_marker(parent_dir) if parent_dir is not None else {}
    marker["erasure"] = meta
    write_marker(out_dir, marker)
    if guard is not None:
        write_guard_record(out_dir, guard)
    return out_dir
