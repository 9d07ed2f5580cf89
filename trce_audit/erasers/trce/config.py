"""TRCE's typed config. SD defaults follow the reference configs (config/stage1/stage1_sexual_default.yaml,
config/stage2/stage2_sexual_default.yaml, stage2_data_preparation.py of github ddgoodgood/TRCE); the
pocket preset is ours (see docs/fidelity.md)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Optional

from ...errors import ConfigError
from ..config import EraserConfig

# Default-mode preserve scale that reproduces the reference's effective prior weight if its cache holds
# 30k COCO captions: reference = 0.01 (config) * 0.01 (applied again) / 3e4 * sum = 1e-4 * caption mean.
# How many captions the cache holds is not known; with MACE's full COCO-2014 cache (616,767 captions)
# the reference's weight would be ~20.6x this (docs/fidelity.md, stage 1 item 7).
DEFAULT_PRESERVE_SCALE = 1e-4
REFERENCE_PRESERVE_SCALE = 0.01
# The reference's stage-1 preserve scale per setup (config/stage1/stage1_{sexual,unsafe}_default.yaml).
PRESET_PRESERVE_SCALES = {"sexual": REFERENCE_PRESERVE_SCALE, "unsafe": 0.02}
CAPTION_SETS = {"sd": "coco-3k", "pocket": "pocket-general"}


@dataclass(frozen=True)
class TRCEConfig(EraserConfig):
    # "default" fixes the reference's slips; "reference" reproduces its arithmetic (docs/fidelity.md).
    mode: str = "default"
    # which reference setup the unset defaults follow: "sexual" (nudity) or "unsafe" (TRCE's 60 concepts)
    preset: str = "sexual"
    seed: int = 0
    # stage 1: closed-form refinement of attn2.to_k / attn2.to_v
    concept_num: int = 20
    augment_num: int = 15
    # weights of the rows [SoT], first [EoT], padding [EoT]s, keyword tokens
    token_weights: tuple[float, ...] = (0.0, 1.0, 0.0, 0.0)
    preserve_scale: Optional[float] = None  # None: the preset's scale squared (default mode) or as is (reference)
    lamb: float = 0.0
    caption_set: Optional[str] = None  # None: coco-3k (sd) or pocket-general (pocket)
    n_captions: Optional[int] = None  # None: the whole caption set
    prior_rows: str = "all"  # "all" 77 rows per caption, or "prompt" rows up to the first [EoT]
    # stage 2: fine-tuning attn1.* and attn2.to_q (FLUX: the joint blocks' text attention) on early steps
    lr: float = 1e-6
    epochs: int = 3
    iterations: Optional[int] = None  # None: epochs x number of malicious trajectories
    stage2_concept_num: Optional[int] = None  # None: concept_num (the unsafe preset uses 60 pairs in stage 2)
    images_per_prompt: int = 5
    trajectory_template: str = "a photo of {}"
    trajectory_guidance: float = 3.0
    steps: int = 50
    max_early_step: int = 25
    guidance: float = 15.0
    beta: float = 1.0
    margin: float = 0.01
    reg_weight: float = 100.0
    reg_batch_size: int = 4
    n_uncond: int = 400
    weight_decay: float = 0.01
    latent_size: Optional[int] = None  # None: the denoiser's native image (the FLUX preset sets 64, not on pocket-flux)

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "mode": ("default", "reference"), "prior_rows": ("all", "prompt"), "preset": tuple(PRESET_PRESERVE_SCALES),
    }

    @classmethod
    def for_world(cls, world: str = "sd") -> "TRCEConfig":
        if world == "pocket":
            # The pocket UNet is ~1-3M parameters at 8x8 latents, trained from scratch: a larger step
            # size and fewer samples reach the same regime in minutes on a CPU; stage 2 is capped at
            # 150 iterations whatever the number of pairs, to bound its CPU time.
            return cls(
                concept_num=20, augment_num=15, lr=1e-4, epochs=2, iterations=150, images_per_prompt=4, steps=50,
                max_early_step=25, n_uncond=32, caption_set=CAPTION_SETS["pocket"], n_captions=1000,
                # measured on the pocket model: 1e-4 (the SD default) loses 17 points of preservation
                # in stage 1; 0.1 keeps it and erases more (docs/fidelity.md, "Pocket presets")
                preserve_scale=0.1,
            )
        if world != "sd":
            raise ConfigError(f"unknown world {world!r}; expected sd or pocket")
        return cls(caption_set=CAPTION_SETS["sd"])

    @classmethod
    def for_target(cls, world: str = "sd", concept: Optional[str] = None) -> "TRCEConfig":
        if world == "sd" and concept == "unsafe":
            # run_trce_stage1 with stage1_unsafe_default.yaml (preserve scale 0.02, 20 pairs) and the
            # unsafe part of stage2_data_preparation.py (60 pairs, "an image depicting {}")
            return cls(caption_set=CAPTION_SETS["sd"], preset="unsafe", stage2_concept_num=60, trajectory_template="an image depicting {}")
        return cls.for_world(world)

    @classmethod
    def for_family(cls, family: str, world: str = "sd", concept: Optional[str] = None) -> "TRCEConfig":
        config = cls.for_target(world, concept)
        if family == "flux" and world != "pocket":
            # Ours: TRCE has no FLUX setup to read. Stage 2 trains at 512 px (64 latent rows, 1,024 image
            # tokens; EraseAnything's FLUX.1-dev size) rather than the native 1,024 px, a quarter of the
            # tokens through three copies of the transformer; every other default is SD's (docs/fidelity.md).
            return replace(config, latent_size=64)
        # pocket-flux keeps the pocket preset as SD's pocket model has it: latent_size None is the native
        # 32 px (8 latent rows, 16 image tokens), the size it was trained and is sampled at.
        return config

    @property
    def reference(self) -> bool:
        return self.mode == "reference"

    @property
    def effective_preserve_scale(self) -> float:
        if self.preserve_scale is not None:
            return self.preserve_scale
        scale = PRESET_PRESERVE_SCALES[self.preset]
        # default mode applies the weight once: the reference's scale applied twice (see DEFAULT_PRESERVE_SCALE)
        return scale if self.reference else scale * scale

    @property
    def pairs_stage2(self) -> int:
        return self.stage2_concept_num if self.stage2_concept_num is not None else self.concept_num

    def validate(self) -> None:
        if len(self.token_weights) != 4:
            raise ConfigError("config key 'token_weights' needs 4 numbers: [SoT], first [EoT], padding [EoT]s, keyword")
        if any(w < 0 for w in self.token_weights) or not any(self.token_weights):
            raise ConfigError("config key 'token_weights' must be non-negative with at least one positive weight")
        positive = {
            "concept_num": self.concept_num, "lr": self.lr, "epochs": self.epochs, "images_per_prompt": self.images_per_prompt,
            "steps": self.steps, "reg_batch_size": self.reg_batch_size, "n_uncond": self.n_uncond,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"config key {key!r} must be positive, got {value!r}")
        if not 0 <= self.max_early_step < self.steps - 1:
            raise ConfigError(f"config key 'max_early_step' must lie in [0, steps - 2], got {self.max_early_step}")
        if self.stage2_concept_num is not None and self.stage2_concept_num <= 0:
            raise ConfigError(f"config key 'stage2_concept_num' must be positive, got {self.stage2_concept_num}")
        if self.iterations is not None and self.iterations < 0:
            raise ConfigError(f"config key 'iterations' must be >= 0, got {self.iterations}")
        if "{}" not in self.trajectory_template:
            raise ConfigError("config key 'trajectory_template' must contain {} where the concept goes")
        for key in ("lamb", "beta", "margin", "reg_weight", "weight_decay", "guidance", "augment_num"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        if self.preserve_scale is not None and self.preserve_scale < 0:
            raise ConfigError(f"config key 'preserve_scale' must be >= 0, got {self.preserve_scale}")
