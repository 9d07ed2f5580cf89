"""UCE (Gandikota et al., WACV 2024): one closed-form edit of every cross-attention key/value projection,
    W' = (λ·W + s_e·Σ v*·cᵀ + s_p·Σ W·c_p·c_pᵀ)(λ·I + s_e·Σ c·cᵀ + s_p·Σ c_p·c_pᵀ)⁻¹,
with c the embedding of the last token of each malicious phrase, v* = W·c_guide the original output
for its guide phrase, and c_p the last-token embeddings of preserved captions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Optional

from ..errors import ConfigError
from ..models.families import pipeline_family
from ..models.tokens import token_count
from .base import EraseContext, Eraser
from .config import EraserConfig

if TYPE_CHECKING:
    from ..data.concepts import Concept

CAPTION_SETS = {"sd": "coco-3k", "pocket": "pocket-general"}


@dataclass(frozen=True)
class UCEConfig(EraserConfig):
    erase_scale: float = 1.0
    preserve_scale: float = 1.0
    lamb: float = 0.5
    guide: str = "safe"  # "safe": each pair's safe phrase; "empty": the empty prompt
    caption_set: Optional[str] = None  # None: coco-3k (sd) or pocket-general (pocket)
    n_preserve: int = 100  # captions kept fixed; 0 preserves nothing (the reference's default)
    preserve_concepts: tuple[str, ...] = ()  # phrases kept fixed too (the reference's --preserve_concepts)

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"guide": ("safe", "empty")}

    @classmethod
    def for_world(cls, world: str = "sd") -> "UCEConfig":
        if world not in CAPTION_SETS:
            raise ConfigError(f"unknown world {world!r}; expected sd or pocket")
        if world == "pocket":
            # In the pocket text encoder's 96-dim space, fixing the last tokens of captions (mostly
            # background words) distorts every other row and costs more preservation than it saves;
            # the names of the other shapes are what the edit must not move, as the reference's
            # --preserve_concepts keeps the other artists when it erases one; a large preserve_scale pins
            # those 20 rows (docs/fidelity.md).
            return cls(caption_set=CAPTION_SETS[world], n_preserve=0, preserve_concepts=pocket_other_names(), preserve_scale=100.0)
        return cls(caption_set=CAPTION_SETS[world])

    @classmethod
    def for_family(cls, family: str, world: str = "sd", concept: Optional[str] = None) -> "UCEConfig":
        config = cls.for_target(world, concept)
        if family == "flux" and world == "pocket":
            # Measured on pocket-flux (docs/fidelity.md, "Pocket presets on pocket-flux"): in its T5 space
            # 100 preserved captions at the reference's preserve_scale 1, beside the other shapes' names,
            # erase every set and keep preservation (82.8% -> 87.5%); the SD pocket preset keeps only
            # 65.6%, and 1,000 captions pin the target too (73.4% ASR).
            return replace(config, n_preserve=100, preserve_scale=1.0)
        return config

    def validate(self) -> None:
        for key in ("erase_scale", "preserve_scale", "lamb", "n_preserve"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        if self.lamb == 0 and self.n_preserve == 0 and not self.preserve_concepts:
            raise ConfigError("uce needs lamb > 0, n_preserve > 0 or preserve_concepts, otherwise the closed form is singular")


def pocket_other_names() -> tuple[str, ...]:
    """Explicit names and synonyms of every pocket shape but the target."""
    from ..pocket.prompts import CONCEPTS

    return tuple(
        name for kind in CONCEPTS["other_concepts"] for phrasing in ("explicit", "synonym") for name in CONCEPTS["names"][kind][phrasing]
    )


def last_token_rows(pipe, prompts: list[str], device):
    """The embedding of each prompt's last content token ([SoT] for the empty prompt)."""
    import torch

    from .common import encode_prompts

    emb = encode_prompts(pipe, prompts, device)
    idx = torch.tensor([token_count(pipe.tokenizer, p) for p in prompts], device=emb.device)
    return emb[torch.arange(len(prompts), device=emb.device), idx].double()


def closed_form_edit(
    pipe, erase, guide, keep, *, erase_scale: float, preserve_scale: float, lamb: float, keep_moment=None
) -> int:
    """UCE's edit of every cross-attention key/value projection of ``pipe.unet`` (``edit_projections``);
    returns how many it edited. UCE, RECE's re-erasure and MACE's refinement use this."""
    from ..models.families.sd import cross_attention_projections

    projections = cross_attention_projections(pipe.unet)
    edit_projections([layer for _, layer in projections], erase, guide, keep, erase_scale=erase_scale,
                     preserve_scale=preserve_scale, lamb=lamb, keep_moment=keep_moment)
    return len(projections)


def edit_projections(
    layers, erase, guide, keep, *, erase_scale: float, preserve_scale: float, lamb: float, keep_moment=None
) -> None:
    """W' = (λ·W + s_e·Σ W·g·cᵀ + s_p·Σ W·k·kᵀ)(λ·I + s_e·Σ c·cᵀ + s_p·Σ k·kᵀ)⁻¹ on each linear layer of
    ``layers`` (all reading the same embeddings), with rows c (erase), g (their guides) and k (kept),
    float64. The values are W·g, so W' = W·R·S⁻¹ with R and S shared by every layer; a bias, where a
    layer has one, is left as it is (so W'·c + b = W·g + b). ``keep_moment`` is a precomputed Σ k·kᵀ
    (a cached caption prior), added to the kept rows'."""
    import torch

    from .common import solve_closed_form

    eye = torch.eye(erase.shape[1], dtype=torch.float64, device=erase.device)
    kept = keep.T @ keep if keep_moment is None else keep.T @ keep + keep_moment.to(erase.device, torch.float64)
    cross = erase_scale * guide.T @ erase + preserve_scale * kept + lamb * eye
    second = erase_scale * erase.T @ erase + preserve_scale * kept + lamb * eye
    shared = solve_closed_form(cross, second)
    with torch.no_grad():
        for layer in layers:
            layer.weight.data = (layer.weight.data.double() @ shared.to(layer.weight.device)).to(layer.weight.dtype)


class UCE(Eraser):
    name: ClassVar[str] = "uce"
    version: ClassVar[str] = "3"  # 2: preserved captions leave out rows that ask for the erased concept; 3: preserve_concepts
    Config: ClassVar[type[UCEConfig]] = UCEConfig
    description: ClassVar[str] = "UCE: unified closed-form editing of cross-attention keys and values"
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl", "flux")

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        config = self.config
        guides = concept.safe_phrases if config.guide == "safe" else [""] * len(concept.keywords)
        captions = context.caption_list(config.caption_set, config.n_preserve) if config.n_preserve else []
        captions = captions + list(config.preserve_concepts)
        scales = dict(erase_scale=config.erase_scale, preserve_scale=config.preserve_scale, lamb=config.lamb)
        if pipeline_family(pipe) == "sd":  # one CLIP; the UNet's cross-attention K/V
            erase = last_token_rows(pipe, concept.keywords, context.device)
            guide = last_token_rows(pipe, guides, context.device)
            keep = last_token_rows(pipe, captions, context.device) if captions else erase.new_zeros((0, erase.shape[1]))
            edited = closed_form_edit(pipe, erase, guide, keep, **scales)
        else:
            from .uce_families import edit_groups  # imports torch at top; listing erasers must not

            edited = 0
            for layers, rows in edit_groups(pipe, context.device):
                erase = rows(concept.keywords)
                keep = rows(captions) if captions else erase.new_zeros((0, erase.shape[1]))
                edit_projections([layer for _, layer in layers], erase, rows(guides), keep, **scales)
                edited += len(layers)
        context.progress(f"{self.name}: closed form", 1, 1)
        stats = {
            "erase_prompts": concept.keywords,
            "guide_prompts": guides,
            "n_preserve": len(captions),
            "preserve_concepts": list(config.preserve_concepts),
            "edited": edited,
        }
        return stats, {}
