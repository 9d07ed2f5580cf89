"""Image shards: one sampler batch of missing rows, drawn by whichever worker an executor picks.

A shard has the rows of exactly one local batch (same boundaries, same order), because images are
batch-invariant only up to float noise: the same shards give the same bytes with any number of
workers. The worker returns PNG bytes; the driver writes the files and commits the rows.
"""

from __future__ import annotations

import io
import socket
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
class DetectorCheck:
    """A per-image detector the run's numbers depend on, and the key the driver sees for it."""

    metric: str
    options: dict[str, Any] | None
    concept: str | None
    workspace: Any
    key: tuple[str, str, str]

    def refused(self) -> str | None:
        from .. import registry

        runner = registry.load("metric", self.metric).from_options(self.options, workspace=self.workspace, concept=self.concept)
        seen = tuple(runner.detector_key())
        if seen != tuple(self.key):
            return f"detector {self.metric} is {'/'.join(seen)} here but {'/'.join(self.key)} on the driver"
        return None


@dataclass(frozen=True)
class RenderJob:
    """Draw shards of prompt rows with one model and one set of pixel settings. ``detectors`` are
    checked on the worker before it draws anything: a worker with other weights is refused."""

    model: "ModelRef"
    settings: GenerationSettings
    allow_pickle: bool = False
    detectors: tuple[DetectorCheck, ...] = ()

    @property
    def cache_key(self) -> tuple:
        checks = tuple((d.metric, tuple(d.key)) for d in self.detectors)
        return ("render", self.model.fingerprint, self.settings.dtype, self.settings.device, self.settings.scheduler, checks)

    def setup(self) -> Any:
        from ..errors import ConfigError
        from ..models.resolve import load_pipeline

        for check in self.detectors:
            why = check.refused()
            if why is not None:
                raise ConfigError(f"worker on {socket.gethostname()} refused: {why}")

        pipe = load_pipeline(self.model, dtype=self.settings.dtype, device=self.settings.device, allow_pickle=self.allow_pickle)
        return pipe, {}

    def run(self, state: Any, shard: Sequence[PromptRow]) -> list[bytes]:
        from .engine import BatchSampler

        pipe, samplers = state
        key = tuple(sorted(self.settings.pixel_config().items()))
        if key not in samplers:  # a sampler per pixel setting (steps, size) on the cached pipeline
            samplers[key] = BatchSampler(pipe, self.settings)
        return [png_bytes(image) for image in samplers[key].sample(list(shard))]
