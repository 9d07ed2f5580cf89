"""Generation runs in the store: resumable by run identity, images reused by sample hash.

A run's identity covers the model fingerprint, the prompt-set sha and the settings that change pixels
(steps, size, dtype, scheduler, limit); batch size and device are runtime only. Each finished batch is
recorded in one transaction, so a killed run loses at most the batch in flight and a rerun makes only
the images still missing. A sample hash (prompt text, seed, guidance, pixel settings, model
fingerprint) names one image: an identical sample stored by any earlier run is referenced, not redrawn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import DataError, one_line
from ..execution.local import LocalExecutor
from ..hashing import hash_obj, sha256_file
from ..metrics.detections import detection_rows
from ..records import GeneratedImage, PromptRow
from ..workspace import temp_sibling
from .learned_tokens import learned_sha
from .settings import GenerationSettings
from .shards import RenderJob

if TYPE_CHECKING:
    from ..execution import Executor
    from ..models.resolve import ModelRef
    from ..store import Store
    from ..workspace import Workspace

ENGINE_NAME = "batched-sd"
ENGINE_VERSION = "1"

ProgressFn = Callable[[int, int], None]  # (images done, images total)


@dataclass
class GenerationResult:
    run_id: int
    identity: str
    prompt_set_id: int
    settings: GenerationSettings
    images: list[GeneratedImage] = field(default_factory=list)
    generated: int = 0
    reused: int = 0
    already_stored: int = 0
    runtime: dict[str, Any] = field(default_factory=dict)  # where its first drawn shard ran; {} when none was drawn

    @property
    def n_images(self) -> int:
        return len(self.images)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "identity": self.identity,
            "prompt_set_id": self.prompt_set_id,
            "n_images": self.n_images,
            "generated": self.generated,
            "reused": self.reused,
            "already_stored": self.already_stored,
            "settings": self.settings.pixel_config(),
        }


def sample_hash(row: PromptRow, pixel_config: dict[str, Any], model_fingerprint: str) -> str:
    learned = learned_sha(row)  # a learned token embedding changes the pixels; plain rows hash as before
    return hash_obj(
        {
            "text": row.text,
            "seed": int(row.seed),
            "guidance": float(row.guidance),
            "settings": pixel_config,
            "model": model_fingerprint,
            "engine": ENGINE_VERSION,
            **({"learned_token": learned} if learned else {}),
        }
    )


def _write_png(data: bytes, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a kill mid-write never leaves a truncated PNG under the final name
    return sha256_file(path)


def _reusable(store: "Store", digest: str) -> tuple[str, str] | None:
    found = store.find_generation(digest)
    if found is None or not Path(found.image_path).is_file():
        return None
    if sha256_file(found.image_path) != found.image_sha256:
        return None
    return found.image_path, found.image_sha256


def _batches(rows: Sequence[PromptRow], size: int):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def run_generation(
    store: "Store",
    workspace: "Workspace",
    model: "ModelRef",
    prompt_set_id: int,
    settings: GenerationSettings | None = None,
    *,
    limit: int | None = None,
    parent_run_id: int | None = None,
    allow_pickle: bool = False,
    progress: ProgressFn | None = None,
    executor: "Executor | None" = None,
    detectors: Sequence[Any] = (),
) -> GenerationResult:
    """Make the run's missing images, shard by shard on ``executor`` (default: in this process).
    ``detectors`` (shards.DetectorCheck) must match on every worker before it draws, and score each
    image there; their detections are committed with the shard's rows (under this run's id)."""
    settings = (settings or GenerationSettings()).validate().resolved(model.path)
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    rows = store.prompt_rows(prompt_set_id)[:limit]
    if not rows:
        raise DataError(f"prompt set {prompt_set_id} has no prompts")
    pixel_config = settings.pixel_config()
    handle = store.start_run(
        kind="generate",
        component=ENGINE_NAME,
        component_version=ENGINE_VERSION,
        config={**pixel_config, "limit": limit},
        runtime={**settings.runtime(), **(executor.runtime() if executor is not None else {})},
        model_ref=model.spec,
        model_fingerprint=model.fingerprint,
        prompt_set_id=prompt_set_id,
        parent_run_id=parent_run_id,
    )
    result = GenerationResult(handle.id, handle.identity, prompt_set_id, settings)
    try:
        _fill_run(store, workspace, model, rows, settings, result, allow_pickle, progress, executor, tuple(detectors))
    except BaseException as exc:
        store.fail_run(handle.id, one_line(f"{type(exc).__name__}: {exc}"))
        raise
    by_prompt = {row.id: row for row in rows}
    hashes = {row.id: sample_hash(row, pixel_config, model.fingerprint) for row in rows}
    result.images = [
        GeneratedImage(g.id, by_prompt[g.prompt_id], g.image_path, g.image_sha256, hashes[g.prompt_id])
        for g in store.generations(handle.id)
        if g.prompt_id in by_prompt
    ]
    store.complete_run(
        handle.id,
        {"n_images": result.n_images, "generated": result.generated, "reused": result.reused},
        runtime=result.runtime,
    )
    return result


def _fill_run(store, workspace, model, rows, settings, result: GenerationResult, allow_pickle, progress, executor, detectors) -> None:
    pixel_config = settings.pixel_config()
    done = {g.prompt_id for g in store.generations(result.run_id)}
    result.already_stored = len(done)
    missing = [row for row in rows if row.id not in done]
    total = len(rows)
    if progress:
        progress(len(done), total)

    reused_records, to_draw = [], []
    for row in missing:
        digest = sample_hash(row, pixel_config, model.fingerprint)
        found = _reusable(store, digest)
        if found is None:
            to_draw.append((row, digest))
        else:
            reused_records.append(dict(prompt_id=row.id, sample_hash=digest, image_path=found[0], image_sha256=found[1]))
    if reused_records:
        store.add_generations(result.run_id, reused_records)
        result.reused = len(reused_records)
    finished = len(done) + result.reused
    if progress:
        progress(finished, total)
    if not to_draw:
        return

    shards = list(_batches(to_draw, settings.batch_size))
    folder = workspace.images_dir / result.identity[:16]
    owned = executor is None
    if owned:
        executor = LocalExecutor()
    try:
        job = RenderJob(model, settings, allow_pickle, detectors)
        first = None
        for index, drawn in executor.map_unordered(job, [[row for row, _ in shard] for shard in shards]):
            if first is None or index < first:  # the lowest shard's: a record that does not depend on timing
                first, result.runtime = index, dict(drawn.runtime)
            records = []
            for (row, digest), png in zip(shards[index], drawn.pngs):
                path = folder / f"{row.idx:06d}_{digest[:12]}.png"
                records.append(dict(prompt_id=row.id, sample_hash=digest, image_path=str(path), image_sha256=_write_png(png, path)))
            found = _detection_rows(result.run_id, detectors, drawn.detections, len(records))
            # one transaction per shard, its detections included when the worker scored it
            store.add_generations(result.run_id, records, **({"detections": found} if found is not None else {}))
            result.generated += len(records)
            finished += len(records)
            if progress:
                progress(finished, total)
    finally:
        if owned:
            executor.close()


def _detection_rows(run_id: int, detectors: Sequence[Any], detections: Sequence[Sequence[Any]], n: int) -> list[list[dict]] | None:
    """Per image of a shard, the rows of every detector that scored it on the worker (None: unscored)."""
    if not detectors:
        return None
    return [
        [row for check, found in zip(detectors, detections) for row in detection_rows(run_id, found[i], tuple(check.key))]
        for i in range(n)
    ]
