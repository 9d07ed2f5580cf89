"""Generation settings: which of them change pixels (and so name a run) and which are runtime only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models.device import check_dtype, resolve_device
from ..models.families import default_size, own_sampling, require_family
from ..models.families.presets import preset_named

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
ADDED_FIELDS = ("preset", "guidance", "max_sequence_length")


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
    # The fields below came with model families; None leaves the identity of every earlier run unchanged.
    preset: str | None = None  # a protocol preset (models/families/presets.py) that filled the unset fields
    guidance: float | None = None  # one guidance scale for every row, in place of each prompt row's own
    max_sequence_length: int | None = None  # T5 prompt length (SD3, FLUX); None: the pipeline's default

    @classmethod
    def for_preset(cls, preset: str | None, **given: Any) -> "GenerationSettings":
        """Settings from what the user gave (None: not given), the preset's values, then the defaults."""
        chosen = {k: v for k, v in given.items() if v is not None}
        if preset is not None:
            chosen = {**preset_named(preset).fills(), **chosen, "preset": preset}
        return cls(**chosen)

    @classmethod
    def from_value(cls, value: "GenerationSettings | dict[str, Any] | None") -> "GenerationSettings | None":
        """Settings as an audit spec or the CLI hands them over (a dict) or as built. None and {} give
        None: each caller falls back to its own default (``settings or GenerationSettings()``)."""
        if isinstance(value, dict):
            return cls.for_preset(**{"preset": None, **value}) if value else None
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
        if self.preset is not None:
            preset_named(self.preset)
        if self.guidance is not None and not 0 <= self.guidance < float("inf"):
            raise ConfigError(f"guidance must be a number of at least 0, got {self.guidance}")
        if self.max_sequence_length is not None and not 1 <= self.max_sequence_length <= 512:
            raise ConfigError(f"max sequence length must be between 1 and 512, got {self.max_sequence_length}")
        check_dtype(self.dtype)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.scheduler!r}; expected one of {', '.join(SCHEDULERS)}")
        self.device = resolve_device(self.device)
        return self

    def resolved(self, model_path: Path) -> "GenerationSettings":
        """Fill the default image size (and the T5 length a pocket-world FLUX folder declares) from the
        model's configs (no weights loaded); a preset of another family is refused here, before any
        weights load."""
        if self.preset is not None:
            require_family(model_path, (preset_named(self.preset).family,), f"the {self.preset} preset")
        # pocket-flux samples at its own T5 length (48), written into the run's identity as any given
        # length is; guidance stays each prompt row's (the pocket sets' 7.5), embedded as FLUX.1-dev's.
        own = own_sampling(model_path) if self.max_sequence_length is None else None
        filled = {"max_sequence_length": own[1]} if own else {}
        if self.height is not None and self.width is not None and not filled:
            return self
        default = default_size(model_path)
        return GenerationSettings(**{**asdict(self), "height": self.height or default, "width": self.width or default, **filled})

    def pixel_config(self) -> dict[str, Any]:
        """The settings that change pixels: part of the run identity and of every sample hash."""
        # A field added after runs were stored is left out while unset, so old identities still match.
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_ONLY and not (k in ADDED_FIELDS and v is None)}

    def runtime(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RUNTIME_ONLY}

