"""SPEED's typed config: the reference's nudity run for SD, the preset measured on the pocket model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from ...errors import ConfigError
from ..config import EraserConfig
from ..uce import pocket_other_names


@dataclass(frozen=True)
class SPEEDConfig(EraserConfig):
    prompt: str = ""  # one target phrase (the reference's --target_concepts "nudity"); "" = the concept's phrases
    guide: str = "empty"  # anchor: "empty" prompt (the reference's nudity run) or each pair's "safe" phrase
    target_rows: str = "all"  # "all" rows after [SoT] (the reference's nudity case) or the "last" content token
    params: str = "V"  # which projections: V (the reference's default), K or KV
    retain_scale: float = 0.7  # α
    lamb: float = 0.5  # λ of the invariance constraint
    threshold: float = 0.1  # eigenvalue below which a direction counts as null space
    aug_num: int = 10  # perturbed copies per retained row (0: no augmentation, no filter)
    influence_filter: bool = True  # False = the reference's --disable_filter
    retain_concepts: tuple[str, ...] = ()  # retained phrases (the reference's --retain_path column)
    caption_set: Optional[str] = None  # captions retained too (their last token), n_retain of them
    n_retain: int = 0
    clusters: int = 3
    seed: int = 0

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "guide": ("empty", "safe"), "target_rows": ("all", "last"), "params": ("V", "K", "KV"),
    }

    @classmethod
    def for_world(cls, world: str = "sd") -> "SPEEDConfig":
        if world == "pocket":
            # measured on the shipped pocket model (docs/fidelity.md, "Pocket presets"): its 96-dim text
            # space has no "nudity"-like umbrella word, so every phrase of the concept is a target, mapped
            # onto its safe twin; the retained set is the other shapes' names and 1000 general captions
            # (without them the null space is too wide and preservation drops ~35 points)
            return cls(
                guide="safe", target_rows="last", params="KV", retain_concepts=pocket_other_names(),
                caption_set="pocket-general", n_retain=1000,
            )
        if world != "sd":
            raise ConfigError(f"unknown world {world!r}; expected sd or pocket")
        return cls(prompt="nudity")  # scripts/eval_nudity.sh: "nudity" -> "", retain_scale 0.7, lamb 0.5

    def validate(self) -> None:
        for key in ("retain_scale", "lamb", "threshold", "aug_num", "n_retain"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        if self.retain_scale == 0:
            raise ConfigError("config key 'retain_scale' must be > 0, otherwise the closed form is singular")
        if self.clusters < 1:
            raise ConfigError(f"config key 'clusters' must be >= 1, got {self.clusters}")
        if self.n_retain and not self.caption_set:
            raise ConfigError("config key 'n_retain' needs a caption_set to draw captions from")
