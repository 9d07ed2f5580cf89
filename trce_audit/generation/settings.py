"""Generation settings: which of them change pixels (and so name a run) and which are runtime only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models.device import check_dtype, resolve_device

# User-facing scheduler names -> diffusers classes. Ancestral/SDE samplers draw fresh noise each step;
# the engine passes them the per-sample generators so that noise is per-sample too.
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
}
RUNTIME_ONLY = ("batch_size", "device")


@dataclass
class GenerationSettings:
    """How images are made. ``batch_size`` and ``device`` never change an image, so they are not identity."""

    steps: int = 30
    height: int | None = None
    width: int | None = None
    batch_size: int = 8
    dtype: str = "fp32"
    scheduler: str | None = None
    device: str = "auto"

    @classmethod
    def from_value(cls, value: "GenerationSettings | dict[str, Any] | None") -> "GenerationSettings | None":
        """Settings as an audit spec or the CLI hands them over (a dict) or as built. None and {} give
        None: each caller falls back to its own default (``settings or GenerationSettings()``)."""
        if isinstance(value, dict):
            return cls(**value) if value else None
        return value

    def validate(self) -> "GenerationSettings":
        """Check every field; ``device="auto"`` becomes the concrete device, so runtime() records it."""

        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        for side in ("height", "width"):
            value = getattr(self, side)
            if value is not None and (value < 8 or value % 8):
                raise ConfigError(f"{side} must be a positive multiple of 8, got {value}")
        check_dtype(self.dtype)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.scheduler!r}; expected one of {', '.join(SCHEDULERS)}")
        self.device = resolve_device(self.device)
        return self

    def resolved(self, model_path: Path) -> "GenerationSettings":
        """Fill the default image size from the model's configs (no weights loaded)."""
        if self.height is not None and self.width is not None:
            return self
        default = default_image_size(model_path)
        return GenerationSettings(**{**asdict(self), "height": self.height or default, "width": self.width or default})

    def pixel_config(self) -> dict[str, Any]:
        """The settings that change pixels: part of the run identity and of every sample hash."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_ONLY}

    def runtime(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RUNTIME_ONLY}


def default_image_size(model_path: Path) -> int:
    """UNet sample size times the VAE's downsampling factor, as diffusers' pipeline defaults to."""
    try:
        unet = json.loads((Path(model_path) / "unet" / "config.json").read_text())
        vae = json.loads((Path(model_path) / "vae" / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the unet/vae configs of {model_path}: {exc}") from exc
    sample_size = unet.get("sample_size", 64)
    if isinstance(sample_size, (list, tuple)):
        sample_size = sample_size[0]
    return int(sample_size) * 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
