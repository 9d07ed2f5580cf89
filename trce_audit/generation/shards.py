"""Image shards: one sampler batch of missing rows, drawn by whichever worker an executor picks.

A shard has the rows of exactly one local batch (same boundaries, same order), because images are
batch-invariant only up to float noise: the same shards give the same bytes with any number of
workers. The worker returns PNG bytes and, for an eval, each per-image detector's findings on them
(generation fused with scoring, so a cluster's detectors run beside its samplers, not on the
driver; each image is decoded once for all of them); the driver writes the files and commits a
shard's rows and detections in one transaction.
"""

from __future__ import annotations

import io
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from PIL import Image

from .. import registry
from ..errors import ConfigError
from ..metrics.detections import detect_all
from ..metrics.pixels import read_once
from ..models.determinism import where_it_ran
from ..models.resolve import load_pipeline
from ..records import GeneratedImage, PromptRow
from .settings import GenerationSettings

if TYPE_CHECKING:
    from ..models.resolve import ModelRef


def png_bytes(array: Any) -> bytes:
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

    def runner(self) -> Any:
        return registry.load("metric", self.metric).from_options(self.options, workspace=self.workspace, concept=self.concept)

    def refused(self, runner: Any) -> str | None:
        seen = tuple(runner.detector_key())
        if seen != tuple(self.key):
            return f"detector {self.metric} is {'/'.join(seen)} here but {'/'.join(self.key)} on the driver"
        return None


@dataclass(frozen=True)
class RenderedShard:
    """A drawn shard: its PNGs in row order, per detector of the job each image's detections, and
    where it was drawn (models/determinism.where_it_ran, for the run's runtime record)."""

    pngs: list[bytes]
    detections: tuple[list[Any], ...] = ()
    runtime: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderJob:
    """Draw shards of prompt rows with one model and one set of pixel settings, and score each image
    with ``detectors``, which are checked on the worker before it draws anything: a worker with other
    weights is refused."""

    model: "ModelRef"
    settings: GenerationSettings
    allow_pickle: bool = False
    detectors: tuple[DetectorCheck, ...] = ()

    @property
    def cache_key(self) -> tuple:
        checks = tuple((d.metric, tuple(d.key)) for d in self.detectors)
        return ("render", self.model.fingerprint, self.settings.dtype, self.settings.device, self.settings.scheduler, checks)

    def setup(self) -> Any:
        runners = []
        for check in self.detectors:
            runner = check.runner()
            why = check.refused(runner)
            if why is not None:
                raise ConfigError(f"worker on {socket.gethostname()} refused: {why}")
            runners.append(runner)

        pipe = load_pipeline(self.model, dtype=self.settings.dtype, device=self.settings.device, allow_pickle=self.allow_pickle)
        return pipe, {}, runners

    def run(self, state: Any, shard: Sequence[PromptRow]) -> RenderedShard:
        from .engine import BatchSampler

        pipe, samplers, runners = state
        key = tuple(sorted(self.settings.pixel_config().items()))
        if key not in samplers:  # a sampler per pixel setting (steps, size) on the cached pipeline
            samplers[key] = BatchSampler(pipe, self.settings)
        pngs = [png_bytes(image) for image in samplers[key].sample(list(shard))]
        return RenderedShard(pngs, _score(runners, shard, pngs), where_it_ran())


def _score(runners: Sequence[Any], shard: Sequence[PromptRow], pngs: Sequence[bytes]) -> tuple[list[Any], ...]:
    """Each runner's detections of the shard's images, read back from the PNG bytes the driver stores
    (not from the sampler's arrays), so a worker scores exactly what the driver would. Each image is
    decoded once for every runner, as on the driver (metrics/pixels.py): a shard is one sampler
    batch, so its arrays are held for the whole shard."""
    if not runners:
        return ()
    with tempfile.TemporaryDirectory(prefix="trce-shard-") as folder:
        images = []
        for row, png in zip(shard, pngs):
            path = Path(folder) / f"{row.idx:06d}.png"
            path.write_bytes(png)
            images.append(GeneratedImage(0, row, str(path), "", ""))
        with read_once(image.image_path for image in images):
            return tuple(detect_all(r.name, images, r.detect, r.detect_batch_size) for r in runners)
