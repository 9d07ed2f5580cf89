"""Per-image detections: run a detector on a chunk of readable images and refuse to count a failure,
store a chunk's rows (``Store.stored_detections`` reads a pass back).

A chunk's images are decoded once on entry (metrics/pixels.py): an unreadable one fails the chunk
naming it, and detectors that read their pixels with ``pixels.rgb`` get those arrays, not a second read.

Rows of one image keep the detector's output order (some protocols read the first hit). A detector's
``detect`` may return (label, score, box) triples: the box is stored, rules read label and score only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from PIL import Image, UnidentifiedImageError

from ..errors import DataError, TrceAuditError, one_line
from ..records import GeneratedImage
from ..store.schema import NO_DETECTION  # the row stored for an image scored empty ("scored, empty" vs "not scored")
from .pixels import read_once

if TYPE_CHECKING:
    from ..store import Store

Detections = list[tuple[str, float]]


def check_readable(path: Any) -> None:
    """A one-line DataError naming an image that is missing or cannot be decoded (without decoding it:
    for set-level runners whose own loader reads the pixels)."""
    if not Path(path).is_file():
        raise DataError(f"image {path} is missing from the workspace; rerun generation for its run")
    try:
        with Image.open(path) as handle:
            handle.verify()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        raise DataError(f"image {path} cannot be read ({type(exc).__name__}: {one_line(exc)}); regenerate it") from None


def detect_chunk(name: str, chunk: Sequence[GeneratedImage], detect) -> list[Detections]:
    """``detect`` on readable images, one result per image, or a DataError naming the image it failed on."""
    with read_once(image.image_path for image in chunk):
        found = _detect_naming_the_image(name, chunk, detect)
    if len(found) != len(chunk):
        raise DataError(f"{name} detector returned {len(found)} results for {len(chunk)} images (from {chunk[0].image_path})")
    return found


def _detect_naming_the_image(name: str, chunk: Sequence[GeneratedImage], detect) -> list[Detections]:
    try:
        return list(detect(chunk))
    except TrceAuditError:
        raise
    except Exception as exc:
        culprit = chunk[0]
        if len(chunk) > 1:  # find the image it fails on, so that the error can name it
            for image in chunk:
                try:
                    detect([image])
                except Exception:
                    culprit = image
                    break
        raise DataError(
            f"{name} detector failed on image {culprit.image_path}: {type(exc).__name__}: {one_line(exc)}"
        ) from exc


def detection_rows(run_id: int, hits: Detections | None, key: tuple[str, str, str]) -> list[dict[str, Any]]:
    """One image's detection rows (without its generation id): an empty result is stored as NO_DETECTION."""
    detector, version, weights = key
    return [
        dict(run_id=run_id, detector=detector, detector_version=version, weights_sha256=weights, label=label,
             score=float(score), box=(list(box[0]) if box and box[0] else None))
        for label, score, *box in hits or [(NO_DETECTION, 0.0)]
    ]


def detect_all(name: str, images: Sequence[GeneratedImage], detect, batch_size: int) -> list[Detections]:
    """``detect_chunk`` over ``images`` in chunks of ``batch_size``, results in order."""
    found: list[Detections] = []
    for start in range(0, len(images), batch_size):
        found.extend(detect_chunk(name, images[start : start + batch_size], detect))
    return found


def store_detections(
    store: "Store", run_id: int, images: Sequence[GeneratedImage], found: Sequence[Detections], key: tuple[str, str, str]
) -> None:
    records = [dict(row, generation_id=image.generation_id) for image, hits in zip(images, found) for row in detection_rows(run_id, hits, key)]
    store.add_detections(records)
