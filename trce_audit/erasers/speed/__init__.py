"""SPEED (Li et al., ICLR 2026, arXiv 2503.07392): a closed-form edit of the cross-attention projections
whose update lies in the null space of the retained embeddings,
    Δ = W·(C_at − C_tt)·P·(I − M·K·(Kᵀ·P·M·K + λ·I)⁻¹·Kᵀ·P)·M,   M = (C_tt·P + α·I)⁻¹,
with C_tt = Σ c·cᵀ and C_at = Σ c_anchor·cᵀ over the target rows, P the projection onto the directions
where the retained rows' covariance has eigenvalues below ``threshold``, and K the empty prompt's [SoT]
row with three k-means centres of its other rows (kept invariant). Prior-knowledge refinement picks the
retained rows the plain erase would move most (influence filter) and adds copies of them perturbed along
W's least-significant input direction (directed augmentation). Follows ``train_erase_null.py`` of
github.com/Ouxiang-Li/SPEED (docs/fidelity.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Optional

from ..errors import ConfigError
from .base import EraseContext, Eraser
from .config import EraserConfig
from .uce import pocket_other_names

if TYPE_CHECKING:
    from ..data.concepts import Concept


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


def kmeans_centres(rows, k: int, seed: int, iterations: int = 50):
    """Lloyd's k-means (Euclidean), k-means++ seeding drawn with ``seed`` (the reference's kmeans_pytorch
    starts from random rows, unseeded, and can settle with two centres in one cluster)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    picks = [int(torch.randint(len(rows), (1,), generator=generator))]
    while len(picks) < min(k, len(rows)):
        d2 = torch.cdist(rows, rows[picks]).min(dim=1).values ** 2
        if float(d2.sum()) == 0:
            break
        picks.append(int(torch.multinomial((d2 / d2.sum()).float(), 1, generator=generator)))
    centres = rows[picks].clone()
    for _ in range(iterations):
        nearest = torch.cdist(rows, centres).argmin(dim=1)
        moved = torch.stack([rows[nearest == j].mean(0) if (nearest == j).any() else centres[j] for j in range(len(centres))])
        # converged: at the fixed point the assignments repeat and the means come out equal; allclose's
        # rtol 1e-5 also stops a step before it, when the centres move by rounding only
        if torch.allclose(moved, centres):
            break
        centres = moved
    return centres


def mentions(text: str, phrases: list[str]) -> bool:
    return any(re.search(r"\b" + re.escape(p.lower()) + r"\b", text.lower()) for p in phrases if p)


class SPEED(Eraser):
    name: ClassVar[str] = "speed"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[SPEEDConfig]] = SPEEDConfig
    description: ClassVar[str] = "SPEED: closed-form null-space-constrained edit with prior-knowledge refinement"

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        import torch

        from .common import cross_attention_projections, encode_prompts
        from .speed_math import retained_rows, speed_delta, target_sums

        config = self.config
        device = context.device
        targets = [config.prompt] if config.prompt else list(concept.keywords)
        anchors = [""] * len(targets) if config.guide == "empty" else (list(concept.safe_phrases) if not config.prompt else [concept.safe_phrases[0]])
        c_tt, c_at = target_sums(pipe, targets, anchors, config.target_rows, device)
        null = encode_prompts(pipe, [""], device)[0].double()
        invariant = torch.cat([null[:1], kmeans_centres(null[1:], config.clusters, config.seed)]).T
        captions = context.caption_list(config.caption_set, config.n_retain) if config.n_retain else []
        retain = [t for t in captions + list(config.retain_concepts) if not mentions(t, targets)]
        rows = retained_rows(pipe, retain, device)
        which = {"V": ("to_v",), "K": ("to_k",), "KV": ("to_k", "to_v")}[config.params]
        projections = cross_attention_projections(pipe.unet, which)
        generator = torch.Generator().manual_seed(config.seed)
        kept: list[int] = []
        with torch.no_grad():
            for i, (_, layer) in enumerate(projections):
                weight = layer.weight.data.double()
                delta, n_rows = speed_delta(weight, c_tt, c_at, rows, invariant, config, generator)
                layer.weight.data = (weight + delta).to(layer.weight.dtype)
                kept.append(n_rows)
                context.progress("speed: closed form", i + 1, len(projections))
        stats = {
            "targets": targets, "anchors": anchors, "n_retain": len(retain), "retained_rows_per_layer": kept,
            "edited": len(projections),
        }
        return stats, {}
