"""Images as small inline data URIs, so a report is one file that works offline."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

THUMB_PX = 160


def thumbnail_data_uri(path: str | Path, max_px: int = THUMB_PX) -> str | None:
    """A downscaled copy of the image as a data URI; None when the file is missing or unreadable."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((max_px, max_px))
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    buffer = io.BytesIO()
    # Tiny images (pocket world, tests) stay lossless; photographs compress far better as JPEG.
    if image.width * image.height <= 96 * 96:
        image.save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    else:
        image.save(buffer, format="JPEG", quality=82, optimize=True)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
