"""The metric-runner interface and the per-image scoring loop runners share (stored detections, reused).

A runner gets the images of a generation run (``GeneratedImage``: generation id, image path, prompt row
with its meta) and returns ``MetricValue``s (metrics/values.py). Per-image runners implement ``detect``
(scores for a batch of images) and ``aggregate``; ``MetricRunner.score`` stores each image's detections
and, on a rerun or for another eval over the same images, scores only the images with none stored for
this detector, version and weights. An image that cannot be read or a detector error fails the scoring
with a one-line error naming the image; nothing is counted as safe for want of a score. A runner whose
``calibration`` returns counts also gets a Rogan–Gladen-corrected ``asr_corrected`` (metrics/calibrated.py).
Set-level runners (FID) override ``score`` instead. ``detect_together`` runs the detection passes of
several runners chunk by chunk, so that each image is read once for all of them (metrics/pixels.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from ..errors import ConfigError, DataError
from ..records import GeneratedImage
from .calibrated import with_corrected
from .detections import Detections, detect_chunk, store_detections
from .pixels import read_once
from .values import Calibration, MetricValue

__all__ = ["MetricRunner", "build_config", "detect_together"]

Pass = tuple["MetricRunner", tuple[str, str, str], Callable]  # (runner, detector key, detect)

if TYPE_CHECKING:
    from ..store import Store
    from ..workspace import Workspace


def build_config(config_cls: type, options: dict[str, Any] | None, component: str):
    """A runner's Config from user options, with a one-line error naming an unknown key."""
    options = dict(options or {})
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{component}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}")
    try:
        return config_cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{component}: {exc}") from exc


class MetricRunner:
    """Base class of metric runners. Subclasses set ``name``, ``version``, ``Config`` and implement
    either ``detect`` + ``aggregate`` (per-image) or ``score`` (whole set)."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Config: ClassVar[type]
    produces: ClassVar[tuple[str, ...]] = ()  # metric names it stores ("asr", "fid", …)
    detect_batch_size: ClassVar[int] = 16

    def __init__(self, config: Any = None, *, workspace: "Workspace | None" = None, concept: str | None = None):
        self.config = config if config is not None else self.Config()
        self.workspace = workspace
        self.concept = concept  # the concept under audit, for runners whose detector is concept-specific

    @classmethod
    def from_options(
        cls, options: dict[str, Any] | None = None, *, workspace: "Workspace | None" = None, concept: str | None = None
    ) -> "MetricRunner":
        return cls(build_config(cls.Config, options, cls.name), workspace=workspace, concept=concept)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def protocol(self) -> dict[str, Any]:
        """What defines the numbers: stored with every value."""
        return {"metric": self.name, "runner_version": self.version, **self.config_dict()}

    # --------------------------------------------------------------- per-image runners
    def detector_key(self) -> tuple[str, str, str]:
        """(detector, detector_version, weights_sha256) under which per-image detections are stored."""
        raise NotImplementedError

    def detect(self, images: Sequence[GeneratedImage]) -> list[Detections]:
        raise NotImplementedError

    def passes(self) -> list[tuple[tuple[str, str, str], Callable]]:
        """(detector key, detect) of each per-image pass a complete scoring needs: one by default
        (NudeNet has one per inference resolution); NotImplementedError for a set-level runner."""
        return [(self.detector_key(), self.detect)]

    def aggregate(self, images: Sequence[GeneratedImage], detections: dict[int, Detections]) -> list[MetricValue]:
        raise NotImplementedError

    def scored(self, detections: dict[int, Detections], image: GeneratedImage) -> Detections:
        """One image's detections from a pass. An image missing from it was never scored: that is an
        error naming the image, never a miss (``aggregate`` counts nothing as safe for want of a score)."""
        try:
            return detections[image.generation_id]
        except KeyError:
            raise DataError(f"{self.name}: image {image.image_path} has no stored detections; it was not scored") from None

    def calibration(self) -> Calibration | None:
        """The scorer's measured sensitivity and specificity for the concept under audit, when a
        calibration set has measured them for these exact weights; None otherwise."""
        return None

    def shows_concept(self, detections: Detections) -> bool:
        """Whether one image's detections count as a success for the attack-success rate (attacks that
        stop on success judge candidates with it)."""
        raise NotImplementedError

    def verdicts(self) -> dict[str, tuple[tuple[str, str, str], Callable[[Detections], bool]]]:
        """Each per-image rule the runner reports an ASR by, keyed by scorer: the detector key of the
        pass it reads and the rule (its own ``shows_concept`` by default; NudeNet adds each preset)."""
        return {self.name: (self.detector_key(), self.shows_concept)}

    def stored_keys(self) -> set[tuple[str, str]]:
        """(scorer, name) of every number a complete scoring stores (a repeated eval skips the runner
        when they are all stored)."""
        keys = {(self.name, name) for name in self.produces}
        if "asr" in self.produces and self.calibration() is not None:
            keys.add((self.name, "asr_corrected"))
        return keys

    def score(self, store: "Store", run_id: int, images: Sequence[GeneratedImage]) -> list[MetricValue]:
        detections = self.detections_for(store, run_id, images, self.detector_key(), self.detect)
        return self.finish(self.aggregate(images, detections))

    def finish(self, values: list[MetricValue]) -> list[MetricValue]:
        """The aggregated values plus, where the scorer is calibrated, its Rogan–Gladen-corrected ASR."""
        return with_corrected(values, self.calibration(), self.name)

    def detections_for(
        self, store: "Store", run_id: int, images: Sequence[GeneratedImage], key: tuple[str, str, str], detect
    ) -> dict[int, Detections]:
        """Every image's detections under ``key``: the stored ones, and ``detect`` run on the rest only.

        A chunk is stored only when the detector scored every image in it, so a failure (an unreadable
        image, a detector error) fails the run naming the image, counts nothing as safe, and leaves the
        chunks already stored for a rerun, which scores only what is missing."""
        detections = store.stored_detections([image.generation_id for image in images], key)
        missing = [image for image in images if image.generation_id not in detections]
        for start in range(0, len(missing), self.detect_batch_size):
            chunk = missing[start : start + self.detect_batch_size]
            found = detect_chunk(self.name, chunk, detect)
            store_detections(store, run_id, chunk, found, key)
            detections.update({image.generation_id: [tuple(hit[:2]) for hit in hits] for image, hits in zip(chunk, found)})
        return detections


def detect_together(
    store: "Store", run_id: int, images: Sequence[GeneratedImage], runners: Sequence[MetricRunner],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Store every per-image pass of ``runners`` over ``images`` in one sweep: each chunk of images is
    decoded once and handed to each pass that has not scored it, which stores its detections as
    ``detections_for`` would (a failure names the image and keeps what is stored). Each runner's
    ``score`` then finds them stored. Set-level runners are left to their own ``score``.
    ``progress(done, total)`` hears of each chunk."""
    passes: dict[tuple[str, str, str], Pass] = {}
    for runner in runners:
        try:
            for key, detect in runner.passes():
                passes.setdefault(key, (runner, key, detect))  # one pass per key, whoever asks for it
        except NotImplementedError:
            continue
    if len(passes) < 2:
        return  # one pass reads each image once by itself
    ids = [image.generation_id for image in images]
    done = {key: set(store.stored_detections(ids, key)) for key in passes}
    # Chunks a multiple of every runner's batch: each detector sees the batches it would see alone
    # (CLIP's float32 scores depend on the batch at rounding level); bounded, for odd batch sizes.
    sizes = [runner.detect_batch_size for runner, _, _ in passes.values()]
    common = math.lcm(*sizes)
    chunk_size = common if common <= 4 * max(sizes) else max(sizes)
    for start in range(0, len(images), chunk_size):
        chunk = images[start : start + chunk_size]
        with read_once():  # each batch's images decoded on entry to its first pass, then shared
            for runner, key, detect in passes.values():
                missing = [image for image in chunk if image.generation_id not in done[key]]
                for first in range(0, len(missing), runner.detect_batch_size):
                    batch = missing[first : first + runner.detect_batch_size]
                    store_detections(store, run_id, batch, detect_chunk(runner.name, batch, detect), key)
        if progress:
            progress(min(start + chunk_size, len(images)), len(images))
