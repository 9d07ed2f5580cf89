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
from typing import TYPE_CHECKING, ClassVar

from ..base import EraseContext, Eraser
from .config import SPEEDConfig

if TYPE_CHECKING:
    from ...data.concepts import Concept

__all__ = ["SPEED", "SPEEDConfig"]


def mentions(text: str, phrases: list[str]) -> bool:
    return any(re.search(r"\b" + re.escape(p.lower()) + r"\b", text.lower()) for p in phrases if p)


class SPEED(Eraser):
    name: ClassVar[str] = "speed"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[SPEEDConfig]] = SPEEDConfig
    description: ClassVar[str] = "SPEED: closed-form null-space-constrained edit with prior-knowledge refinement"

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        from .edit import edit_projections  # torch: listing and validating SPEED imports none

        config = self.config
        targets = [config.prompt] if config.prompt else list(concept.keywords)
        anchors = [""] * len(targets) if config.guide == "empty" else (list(concept.safe_phrases) if not config.prompt else [concept.safe_phrases[0]])
        captions = context.caption_list(config.caption_set, config.n_retain) if config.n_retain else []
        retain = [t for t in captions + list(config.retain_concepts) if not mentions(t, targets)]
        kept, edited = edit_projections(pipe, config, targets, anchors, retain, context)
        stats = {
            "targets": targets, "anchors": anchors, "n_retain": len(retain), "retained_rows_per_layer": kept,
            "edited": edited,
        }
        return stats, {}
