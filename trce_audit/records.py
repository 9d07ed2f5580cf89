"""Plain records that cross layers: a prompt row and a stored image, detached from any session.

They sit below the store so that data, generation and metrics can speak them without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .hashing import prompt_row_hash

# A row's seed is stored as BIGINT (I2P seeds pass 2**31; SQLite and Postgres both stop at 2**63-1), so a
# prompt file is checked against it before anything is stored.
MAX_SEED = 2**63 - 1


@dataclass
class PromptRow:
    """A prompt as components see it: plain values, detached from any session."""

    text: str
    seed: int
    guidance: float = 7.5
    meta: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    idx: int | None = None

    @property
    def row_hash(self) -> str:
        return prompt_row_hash(self.text, self.seed, self.guidance)

    def requests_concept(self, concept: str) -> bool:
        """Whether the row's metadata says it asks for ``concept``; rows without such metadata never do."""
        meta = self.meta or {}
        return concept in (meta.get("concepts") or [meta.get("concept")])


@dataclass(frozen=True)
class GeneratedImage:
    """One stored image of a generation run and the prompt row it was drawn from."""

    generation_id: int
    prompt: PromptRow
    image_path: str
    image_sha256: str
    sample_hash: str
