"""ESD (Gandikota et al., ICCV 2023): fine-tune the UNet so that ε(x_t, c) follows the negatively
guided prediction ε₀(x_t, ∅) − η·(ε₀(x_t, c) − ε₀(x_t, ∅)) of the frozen original model, on latents
x_t that the original model samples for c (classifier-free guidance, DDIM) up to a random step.

η is the paper's (and the original CompVis script's): η = 1 already pushes away from the concept.
``esd_sd.py`` writes the target as ε₀(c) − η'·(ε₀(c) − ε₀(∅)), so its η' = η + 1 (its default 2 is
the paper's 1); η = 0 maps the concept onto the unconditional prediction.

``esd-x`` trains the cross-attention layers (attn2), ``esd-u`` every Linear/Conv2d outside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Optional

from ..errors import ConfigError
from .base import EraseContext, Eraser
from .config import EraserConfig
# Served here for tests/test_erasers.py; its home is esd_target.py because esd_train.py needs it and
# importing it from here would close a cycle (this module imports esd_train).
from .esd_target import negative_guidance_target  # noqa: F401

if TYPE_CHECKING:
    from ..data.concepts import Concept


@dataclass(frozen=True)
class ESDConfig(EraserConfig):
    lr: float = 1e-5
    iterations: int = 1000
    negative_guidance: float = 1.0
    start_guidance: float = 3.0  # guidance of the sampling that produces x_t
    steps: int = 50
    prompt: Optional[str] = None  # None: the concept's malicious phrases, one per iteration in turn
    seed: int = 0
    latent_size: Optional[int] = None  # None: the UNet's sample_size

    @classmethod
    def for_world(cls, world: str = "sd") -> "ESDConfig":
        if world == "pocket":
            # a tiny UNet trained from scratch takes a larger step; ESD-x generalises from its bare
            # concept phrases to whole sentences slowly, so it runs longer (docs/fidelity.md, "Pocket presets")
            return cls(lr=1e-3, iterations=2000)
        if world != "sd":
            raise ConfigError(f"unknown world {world!r}; expected sd or pocket")
        return cls()

    @classmethod
    def for_family(cls, family: str, world: str = "sd", concept: str | None = None) -> "ESDConfig":
        if family == "sdxl":
            # esd_sdxl.py@7f51541 (rohitgandikota/erasing): --iterations 200, --lr 2e-4, --num_inference_steps
            # 20, --guidance_scale 7 for the x_t it samples, --negative_guidance 1
            return cls(lr=2e-4, iterations=200, steps=20, start_guidance=7.0, negative_guidance=1.0)
        return super().for_family(family, world, concept)

    def validate(self) -> None:
        for key in ("lr", "iterations", "steps"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key {key!r} must be positive, got {getattr(self, key)!r}")
        if self.negative_guidance < 0 or self.start_guidance < 0:
            raise ConfigError("config keys 'negative_guidance' and 'start_guidance' must be >= 0")


@dataclass(frozen=True)
class ESDUConfig(ESDConfig):
    @classmethod
    def for_world(cls, world: str = "sd") -> "ESDUConfig":
        if world == "pocket":
            # the sweep in docs/fidelity.md: more steps or a larger lr cost preservation faster than they erase
            return cls(lr=3e-4, iterations=300)
        return super().for_world(world)


class _ESD(Eraser):
    version: ClassVar[str] = "2"  # 2: η as in the paper, target ε₀(∅) − η·(ε₀(c) − ε₀(∅))
    Config: ClassVar[type[ESDConfig]] = ESDConfig
    method: ClassVar[str] = ""

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        from .esd_train import fine_tune_unet  # torch: listing and validating ESD imports none

        return fine_tune_unet(pipe, concept, self.config, context, label=self.name, method=self.method)


class ESDX(_ESD):
    name: ClassVar[str] = "esd-x"
    method: ClassVar[str] = "xattn"
    description: ClassVar[str] = "ESD-x: erase by negative guidance, fine-tuning cross-attention only"
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl")


class ESDXStrict(_ESD):
    name: ClassVar[str] = "esd-x-strict"
    method: ClassVar[str] = "xattn-strict"
    description: ClassVar[str] = "ESD-x-strict: erase by negative guidance, fine-tuning cross-attention keys and values only"
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl")


class ESDU(_ESD):
    name: ClassVar[str] = "esd-u"
    version: ClassVar[str] = "3"  # 3: conv_out and time_embedding no longer trained (the original's set)
    Config: ClassVar[type[ESDConfig]] = ESDUConfig
    method: ClassVar[str] = "noxattn"
    description: ClassVar[str] = "ESD-u: erase by negative guidance, fine-tuning all layers but cross-attention"
