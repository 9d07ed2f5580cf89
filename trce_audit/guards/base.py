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

from typing import Any, ClassVar


class Guard:
    """Base class; subclasses set ``name`` and ``version`` and implement the three hooks."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    # Guards that tokenise the prompt text again (SAFREE's trigger tokens) would see a learned token's
    # placeholder as plain text, so the engine refuses learned-token rows for them.
    retokenizes_prompts: ClassVar[bool] = False
    # Model families whose sampling the guard can steer (the engine refuses any other in one line).
    families: ClassVar[tuple[str, ...]] = ("sd",)

    def __init__(self, config: dict[str, Any]):
        self.config = dict(config)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "config": self.config}

    def prepare(self, sampler: Any, texts: list[str], uncond: Any, cond: Any) -> dict[str, Any]:
        """Per-batch state from the batch's unconditional and conditional ``Conditioning`` (the engine
        passes itself as ``sampler``: its family, encoder and settings)."""
        return {}

    def step_noise(self, unet: Any, latents: Any, t: Any, step: int, guidance: Any, state: dict[str, Any]) -> Any:
        """The guided noise prediction of every row at sampling step ``step``."""
        raise NotImplementedError

    def attack_noise(self, pipe: Any, x_t: Any, t: Any, hidden: Any, ids: Any) -> Any:
        """The guarded conditional prediction for encoder states ``hidden`` of token ids ``ids``."""
        raise NotImplementedError

