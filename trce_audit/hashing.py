"""Stable content hashes: canonical JSON for configs, streamed sha256 for files and folders, and the
hashes that name a run and a prompt row (stored, so their inputs must never change)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

_CHUNK = 1 << 20


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot hash object of type {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False)


def hash_obj(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_tree(root: str | os.PathLike, suffixes: Iterable[str] | None = None) -> str:
    """Hash of every file below ``root`` (relative path + content), independent of walk order."""
    root = Path(root)
    wanted = tuple(suffixes) if suffixes else None
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if wanted and not path.name.endswith(wanted):
            continue
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode("utf-8") + b"\0" + sha256_file(path).encode("ascii") + b"\n")
    return digest.hexdigest()


def run_identity(
    kind: str,
    component: str,
    config: dict[str, Any],
    *,
    component_version: str = "",
    model_fingerprint: str | None = None,
    prompt_set_sha: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> str:
    """Hash that names a run. ``config`` must already exclude runtime-only options."""
    return hash_obj(
        {
            "kind": kind,
            "component": component,
            "component_version": component_version,
            "config": config,
            "model": model_fingerprint,
            "prompts": prompt_set_sha,
            "inputs": inputs or {},
        }
    )


def prompt_row_hash(text: str, seed: int, guidance: float) -> str:
    """Names one prompt row by what changes its image: meta and position are left out."""
    return hash_obj({"text": text, "seed": int(seed), "guidance": float(guidance)})
