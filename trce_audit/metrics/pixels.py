"""An image's pixels, read once per scoring chunk however many detectors look at it.

``eval --metric nudenet,opennsfw`` hands every chunk of images to both detectors (and NudeNet to each
of its inference resolutions). Inside ``read_once`` the first ``rgb(path)`` decodes the file and the
others get the same array, so each image is read from disk once per scoring; outside it, ``rgb``
decodes on every call. ``decode`` is the one function here that opens a file (the tests count its
calls), and its failures are the one-line errors that name the image.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, one_line

__all__ = ["bgr", "decode", "read_once", "rgb"]

# The arrays decoded in the current chunk by path; None outside ``read_once``. A context variable, so
# that a detector's worker threads (which start with an empty context) never see another chunk's.
_held: ContextVar[dict[str, np.ndarray] | None] = ContextVar("trce_audit_chunk_pixels", default=None)


def decode(path: Any) -> np.ndarray:
    """The image as a read-only uint8 HxWx3 RGB array, or a one-line DataError naming it."""
    if not Path(path).is_file():
        raise DataError(f"image {path} is missing from the workspace; rerun generation for its run")
    try:
        with Image.open(path) as handle:
            pixels = np.asarray(handle.convert("RGB"))
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        raise DataError(f"image {path} cannot be read ({type(exc).__name__}: {one_line(exc)}); regenerate it") from None
    pixels.flags.writeable = False  # shared between detectors: none may change what another sees
    return pixels


def rgb(path: Any) -> np.ndarray:
    """The image's RGB pixels: decoded once per ``read_once`` block, else on every call."""
    held = _held.get()
    key = str(path)
    if held is not None and key in held:
        return held[key]
    pixels = decode(path)
    if held is not None:
        held[key] = pixels
    return pixels


def bgr(path: Any) -> np.ndarray:
    """The pixels in OpenCV's channel order, as ``cv2.imread`` returns an 8-bit RGB PNG (NudeNet's input)."""
    return np.ascontiguousarray(rgb(path)[:, :, ::-1])


@contextmanager
def read_once(paths: Iterable[Any] = ()) -> Iterator[None]:
    """Within the block each path is decoded at most once; ``paths`` are decoded on entry, so that an
    unreadable image fails the chunk before any detector runs. Nested blocks share the outer one's."""
    if _held.get() is not None:
        for path in paths:
            rgb(path)
        yield
        return
    token = _held.set({})
    try:
        for path in paths:
            rgb(path)
        yield
    finally:
        _held.reset(token)
