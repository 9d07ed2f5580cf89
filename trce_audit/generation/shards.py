"""Image shards: one sampler batch of missing rows, drawn by whichever worker an executor picks.

A shard has the rows of exactly one local batch (same boundaries, same order), because images are
batch-invariant only up to float noise: the same shards give the same bytes with any number of
workers. The worker returns PNG bytes; the driver writes the files and commits the rows.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ..store import PromptRow
from .settings import GenerationSettings

if TYPE_CHECKING:
    from ..models.resolve import ModelRef


def png_bytes(array: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class RenderJob:
    """Draw shards of prompt rows with one model and one set of pixel settings."""

    model: "ModelRef"
    settings: GenerationSettings
    allow_pickle: bool = False

    @property
    def cache_key(self) -> tuple:
        return ("render", self.model.fingerprint, self.settings.dtype, self.settings.device, self.settings.scheduler)

    def setup(self) -> Any:
        from ..models.resolve import load_pipeline

        pipe = load_pipeline(self.model, dtype=self.settings.dtype, device=self.settings.device, allow_pickle=self.allow_pickle)
        return pipe, {}

    def run(self, state: Any, shard: Sequence[PromptRow]) -> list[bytes]:
        from .engine import BatchSampler

        pipe, samplers = state
        key = tuple(sorted(self.settings.pixel_config().items()))
        if key not in samplers:  # a sampler per pixel setting (steps, size) on the cached pipeline
            samplers[key] = BatchSampler(pipe, self.settings)
        return [png_bytes(image) for image in samplers[key].sample(list(shard))]
