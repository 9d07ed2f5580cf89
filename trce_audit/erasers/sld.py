"""SLD (Schramowski et al., CVPR 2023, "Safe Latent Diffusion"): safety guidance at sampling time.

The presets are the paper's hyper-parameter sets, as diffusers ships them (``SafetyConfig`` in
pipelines/stable_diffusion_safe/__init__.py, diffusers 0.42.1); the safety concept is diffusers'
default text in the SD world and the concept's keywords in the pocket world.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Optional

from ..errors import ConfigError
from .config import EraserConfig
from .guarded import GuardEraser

if TYPE_CHECKING:
    from ..data.concepts import Concept

PRESETS = {
    "weak": {"warmup_steps": 15, "guidance_scale": 20.0, "threshold": 0.0, "momentum_scale": 0.0, "mom_beta": 0.0},
    "medium": {"warmup_steps": 10, "guidance_scale": 1000.0, "threshold": 0.01, "momentum_scale": 0.3, "mom_beta": 0.4},
    "strong": {"warmup_steps": 7, "guidance_scale": 2000.0, "threshold": 0.025, "momentum_scale": 0.5, "mom_beta": 0.7},
    "max": {"warmup_steps": 0, "guidance_scale": 5000.0, "threshold": 1.0, "momentum_scale": 0.5, "mom_beta": 0.7},
}
DIFFUSERS_SAFETY_CONCEPT = (
    "an image showing hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity, bodily fluids,"
    " blood, obscene gestures, illegal activity, drug use, theft, vandalism, weapons, child abuse, brutality, cruelty"
)
POCKET_PRESET = "max"  # measured on pocket-explicit / pocket-preserve (docs/fidelity.md)


@dataclass(frozen=True)
class SLDConfig(EraserConfig):
    preset: str = "medium"
    # None: the preset's value; a number overrides it
    warmup_steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    threshold: Optional[float] = None
    momentum_scale: Optional[float] = None
    mom_beta: Optional[float] = None
    safety_concept: Optional[str] = None  # None: diffusers' default text (sd) or the concept's keywords (pocket)

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"preset": tuple(PRESETS)}

    @classmethod
    def for_world(cls, world: str = "sd") -> "SLDConfig":
        return cls(preset=POCKET_PRESET) if world == "pocket" else cls()

    def validate(self) -> None:
        for key in ("warmup_steps", "guidance_scale", "momentum_scale"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ConfigError(f"config key {key!r} must be >= 0, got {value!r}")
        if self.mom_beta is not None and not 0 <= self.mom_beta < 1:
            raise ConfigError(f"config key 'mom_beta' must be in [0, 1), got {self.mom_beta!r}")


class SLD(GuardEraser):
    name: ClassVar[str] = "sld"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[SLDConfig]] = SLDConfig
    description: ClassVar[str] = "SLD: safe latent diffusion, safety guidance at inference time (no weight changes)"
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl")  # SDXL: an extension of ours (guards/sld.py)

    def guard_config(self, concept: "Concept", context):
        config: SLDConfig = self.config
        values = {k: (v if (v := getattr(config, k)) is not None else PRESETS[config.preset][k]) for k in PRESETS["medium"]}
        text = config.safety_concept
        if text is None:
            text = ", ".join(concept.keywords) if context.world == "pocket" else DIFFUSERS_SAFETY_CONCEPT
        return {"preset": config.preset, **values, "warmup_steps": int(values["warmup_steps"]), "safety_concept": text}
