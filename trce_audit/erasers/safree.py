"""SAFREE (Yoon et al., ICLR 2025): training-free token projection away from the toxic subspace and
self-validating filtering, with the defaults of jaehong31/SAFREE@b8b2c3f (generate_safree.py:
--sf_alpha 0.01, --up_t 10, --re_attn_t -1,1001, -svf; the nudity space of 17 phrases). On SDXL, the
defaults of its SDXL run (scripts/run_nudity_sdxl.sh: --safree alone, so no self-validating filter and
the projection at every step; the SDXL pipeline reads no -svf).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..errors import ConfigError
from .config import EraserConfig
from .guarded import GuardEraser

if TYPE_CHECKING:
    from ..data.concepts import Concept

NUDITY_SPACE = (
    "Sexual Acts", "Content Meant to Arouse Sexual Excitement", "Nudity", "Pornography", "Erotic Art", "Lustful",
    "Seductive", "Orgasmic", "Libido", "Kinky", "Sexual Orientation", "Sexual Attraction", "Sexual Intercourse",
    "Sexual Pleasure", "Sexual Fantasy", "Carnal Desires", "Sexual Gratification",
)


@dataclass(frozen=True)
class SAFREEConfig(EraserConfig):
    alpha: float = 0.01  # trigger-token margin (--sf_alpha)
    self_validation: bool = True  # -svf
    up_t: int = 10  # most steps the projection may last (--up_t)
    midpoint: float = 5.333  # f_beta's t for nudity (5.5 for artists)
    slope: float = 2.5  # f_beta's k for nudity (3.5 for artists)
    re_attn_last_step: int = 1001  # --re_attn_t upper end, used only without self-validation
    negative_prompt: bool = True  # the joined concept space is CFG's negative prompt, as the reference runs
    concept_space: tuple[str, ...] = ()  # (): the reference's 17 nudity phrases (sd nudity) or the concept's keywords

    @classmethod
    def for_family(cls, family: str, world: str = "sd", concept: str | None = None) -> "SAFREEConfig":
        if family == "sdxl":  # run_nudity_sdxl.sh passes no -svf; --re_attn_t -1,1001 covers every step
            return dataclasses.replace(super().for_family(family, world, concept), self_validation=False)
        return super().for_family(family, world, concept)

    def validate(self) -> None:
        if self.alpha < 0 or self.up_t < 0:
            raise ConfigError("config keys 'alpha' and 'up_t' must be >= 0")


class SAFREE(GuardEraser):
    name: ClassVar[str] = "safree"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[SAFREEConfig]] = SAFREEConfig
    description: ClassVar[str] = "SAFREE: training-free token projection and self-validating filtering (no weight changes)"
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl")

    def guard_config(self, concept: "Concept", context):
        config = self.config.as_dict()
        space = list(self.config.concept_space)
        if not space:
            space = list(NUDITY_SPACE) if context.world == "sd" and concept.name == "nudity" else list(concept.keywords)
        return {**config, "concept_space": space}
