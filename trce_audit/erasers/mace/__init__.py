"""MACE (Lu et al., CVPR 2024, "MACE: Mass Concept Erasure in Diffusion Models"), after
``training.py``, ``src/cfr_lora_training.py`` and ``src/fuse_lora_close_form.py`` of github.com/Shilin-LU/MACE:

1. closed-form refinement of every attn2 to_k / to_v (``closed_form``): the words around each
   concept phrase, in augmented prompts, are mapped onto the guide prompt's with a caption prior;
2. per concept, a LoRA on those projections trained so the concept tokens' attention inside the
   concept's masks vanishes (``lora``), on images the model draws of it (``masks``);
3. closed-form fusion of the LoRAs into one set of weights, with the caption prior.
The saved pipeline is plain: the LoRAs exist only during stage 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..base import EraseContext, Eraser
from .config import NUDITY_WORDS, MACEConfig

if TYPE_CHECKING:
    from ...data.concepts import Concept

__all__ = ["MACE", "MACEConfig", "NUDITY_WORDS"]


class MACE(Eraser):
    name: ClassVar[str] = "mace"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[MACEConfig]] = MACEConfig
    description: ClassVar[str] = "MACE: closed-form refinement, masked-attention LoRAs per concept, closed-form fusion"

    def units(self, concept: "Concept") -> list[tuple[str, str]]:
        if self.config.concepts:
            return [(phrase, self.config.mapping) for phrase in self.config.concepts]
        return list(concept.pairs[: self.config.concept_num])

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        from .erase import erase_units  # torch: listing and validating MACE imports none

        return erase_units(pipe, concept, self.config, self.units(concept), context)
