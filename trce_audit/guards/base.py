"""The guard interface the batched engine and the white-box attacks call.

A guard owns the noise prediction of one sampling step: ``prepare`` turns a batch's prompts into the
state the guard needs (extra embeddings, per-row schedules), ``step_noise`` makes the step's UNet call
(one call, however many predictions the guard needs) and combines the predictions, and
``attack_noise`` is the differentiable prediction a white-box attack optimises against (the guarded
counterpart of ``unet(x_t, t, hidden).sample``). The guard's record (name, version, config) lives in
``trce_audit_guard.json`` in the model folder, so the folder's fingerprint, and with it every run
identity, covers it; trce_audit/models/folder.py writes, reads and loads that file.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ModelError
from . import BUILTIN

GUARD_FILE = "trce_audit_guard.json"


class Guard:
    """Base class; subclasses set ``name`` and ``version`` and implement the three hooks."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    # Guards that tokenise the prompt text again (SAFREE's trigger tokens) would see a learned token's
    # placeholder as plain text, so the engine refuses learned-token rows for them.
    retokenizes_prompts: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any]):
        self.config = dict(config)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "config": self.config}

    def prepare(self, sampler: Any, texts: list[str], uncond: Any, cond: Any) -> dict[str, Any]:
        """Per-batch state (the engine passes its own encoder through ``sampler``)."""
        return {}

    def step_noise(self, unet: Any, latents: Any, t: Any, step: int, guidance: Any, state: dict[str, Any]) -> Any:
        """The guided noise prediction of every row at sampling step ``step``."""
        raise NotImplementedError

    def attack_noise(self, pipe: Any, x_t: Any, t: Any, hidden: Any, ids: Any) -> Any:
        """The guarded conditional prediction for encoder states ``hidden`` of token ids ``ids``."""
        raise NotImplementedError


# The record file's old home, superseded by trce_audit/models/folder.py (same bytes). It stays until
# its remaining importers (erasers/base.py, attacks/finetune.py, tests) take it from there.
def write_guard(folder: Path, record: dict[str, Any]) -> None:
    (Path(folder) / GUARD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))


def read_guard_record(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / GUARD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise ModelError(f"{path} names no guard")
    return record


def load_guard(folder: Path) -> Guard | None:
    """The guard a model folder carries, or None for a plain model."""
    record = read_guard_record(folder)
    if record is None:
        return None
    target = BUILTIN.get(record["name"])
    if target is None:
        raise ModelError(f"{Path(folder) / GUARD_FILE} names the unknown guard {record['name']!r}; known: {', '.join(BUILTIN)}")
    module, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    if str(record.get("version")) != cls.version:
        raise ModelError(f"{Path(folder) / GUARD_FILE} was written by {cls.name} version {record.get('version')}, this is version {cls.version}")
    return cls(record.get("config") or {})


def guard_of(pipe: Any) -> Guard | None:
    return getattr(pipe, "trce_guard", None)
