"""MACE's typed config: the SD preset from its explicit-content config, the pocket preset we measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from ...errors import ConfigError
from ..config import EraserConfig
from ..trce.templates import OBJECT_TEMPLATES

# captions_train2014.json + captions_val2014.json: the set MACE's src/cache_coco.py sums its prior over
REFERENCE_PRIOR_CAPTIONS = 414_113 + 202_654
CAPTION_SETS = {"sd": "coco-3k", "pocket": "pocket-general"}
# configs/explicit_content/erase_explicit_content.yaml: multi_concept and mapping_concept
NUDITY_WORDS = ("nudity", "naked", "erotic", "sexual")
NUDITY_CONCEPTS = {"nudity"}


@dataclass(frozen=True)
class MACEConfig(EraserConfig):
    concepts: tuple[str, ...] = ()  # one LoRA each, all mapped onto `mapping`; () = the concept's pairs
    mapping: str = "a person wearing clothes"
    concept_num: Optional[int] = None  # None: every pair (when `concepts` is empty)
    augment_num: int = 30  # templates per phrase (the reference's aug_length 30 of prompt_len 30)
    use_pooler: bool = True  # the [EoT] rows count as concept tokens in the attention loss
    lamb: float = 0.0
    train_preserve_scale: float = 7e-7  # the refinement's prior weight on the reference's COCO-2014 sum
    fuse_preserve_scale: float = 7e-7  # the fusion's
    reference_captions: int = REFERENCE_PRIOR_CAPTIONS  # captions that sum held; our sum is rescaled to the same weight
    caption_set: Optional[str] = None  # None: coco-3k (sd) or pocket-general (pocket)
    n_captions: Optional[int] = None  # None: the whole caption set
    rank: int = 1
    lr: float = 1e-5
    train_steps: int = 120
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    n_images: int = 8
    image_template: str = "a photo of the {}"
    image_steps: int = 30
    image_guidance: float = 7.5
    image_size: Optional[int] = None  # None: the UNet's sample size times the VAE's factor
    data_dir: Optional[str] = None  # the reference's layout: <dir>/<concept>/ and <dir>/<concept> mask/
    masks: str = "auto"  # auto: the data_dir's masks, else segmentation (pocket) or attention (sd); none: every pixel
    attention_threshold: float = 0.5
    seed: int = 0

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"masks": ("auto", "folder", "segmentation", "attention", "none")}

    @classmethod
    def for_world(cls, world: str = "sd") -> "MACEConfig":
        if world == "pocket":
            # measured on the shipped pocket model (docs/fidelity.md, MACE): at the reference's 7e-7 the prior
            # is ~0.4 caption means against 14 x 30 concept prompts and preservation falls to 14%; 7e-3 keeps
            # it within 8 points, 7e-2 keeps more but leaves 31% ASR. A tiny UNet trained from scratch needs
            # a larger LoRA step than SD's 1e-5 to move in 120 steps.
            return cls(
                caption_set=CAPTION_SETS["pocket"], n_captions=1000, image_template="a picture of {}", lr=1e-3,
                train_preserve_scale=7e-3, fuse_preserve_scale=7e-3,
            )
        if world != "sd":
            raise ConfigError(f"unknown world {world!r}; expected sd or pocket")
        return cls(caption_set=CAPTION_SETS["sd"])

    @classmethod
    def for_target(cls, world: str = "sd", concept: str | None = None) -> "MACEConfig":
        config = cls.for_world(world)
        if world == "sd" and concept in NUDITY_CONCEPTS:
            return config.updated({"concepts": NUDITY_WORDS}, source="the explicit-content preset")
        return config

    def validate(self) -> None:
        for key in ("lamb", "train_preserve_scale", "fuse_preserve_scale", "weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        for key in ("rank", "n_images", "image_steps", "reference_captions"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(self, key)!r}")
        if self.lr <= 0 or self.train_steps < 0 or self.augment_num < 1:
            raise ConfigError("config keys 'lr' > 0, 'train_steps' >= 0 and 'augment_num' >= 1 are required")
        if self.augment_num > len(OBJECT_TEMPLATES):
            raise ConfigError(f"config key 'augment_num' is at most {len(OBJECT_TEMPLATES)} (the templates there are), got {self.augment_num}")
        if self.lamb == 0 and (self.train_preserve_scale == 0 or self.fuse_preserve_scale == 0):
            raise ConfigError("mace needs lamb > 0 or both preserve scales > 0, otherwise a closed form can be singular")
        if not 0 < self.attention_threshold <= 1:
            raise ConfigError(f"config key 'attention_threshold' must be in (0, 1], got {self.attention_threshold}")
        if self.masks == "folder" and not self.data_dir:
            raise ConfigError("config key 'masks' = folder needs a data_dir")
        if "{}" not in self.image_template:
            raise ConfigError("config key 'image_template' must contain {} where the concept goes")
