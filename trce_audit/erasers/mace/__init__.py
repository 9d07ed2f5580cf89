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

from types import SimpleNamespace
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
        import torch

        from ..common import cross_attention_projections
        from .closed_form import concept_positions, fused_weight, prior_weight, prompt_moment, refinement_rows
        from .lora import train_concept_loras
        from .masks import concept_data
        from ..trce.stage1 import cached_prior
        from ..trce.templates import augment
        from ..uce import closed_form_edit

        config, device = self.config, context.device
        pipe.unet.requires_grad_(False)
        pipe.text_encoder.requires_grad_(False)
        units = self.units(concept)
        prompts = [list(zip(augment(p, config.augment_num), augment(g, config.augment_num))) for p, g in units]
        prior_config = SimpleNamespace(caption_set=config.caption_set, n_captions=config.n_captions, prior_rows="all")
        moment, n_captions, prior_info = cached_prior(pipe, prior_config, context)
        moment = moment.to(device, torch.float64)
        projections = cross_attention_projections(pipe.unet)
        originals = {name: layer.weight.data.double().clone() for name, layer in projections}

        # the concept's images come from the original model, before any edit (the reference draws them
        # in data_preparation.py first)
        data, moments, unit_stats = [], [], []
        for i, (phrase, _) in enumerate(units):
            images, masks, info = concept_data(pipe, config, concept, phrase, i, context.world)
            concept_prompts = [p for p, _ in prompts[i]]
            positions = torch.stack([concept_positions(pipe.tokenizer, p, phrase, config.use_pooler) for p in concept_prompts])
            data.append((images, masks, concept_prompts, positions))
            moments.append(prompt_moment(pipe, concept_prompts, device))
            unit_stats.append({"phrase": phrase, **info})
            context.progress("mace: concept images", i + 1, len(units))
        erase, guide = refinement_rows(pipe, [pair for unit in prompts for pair in unit], device)
        closed_form_edit(
            pipe, erase, guide, erase.new_zeros((0, erase.shape[1])), erase_scale=1.0, lamb=config.lamb,
            preserve_scale=prior_weight(config.train_preserve_scale, n_captions, config.reference_captions), keep_moment=moment,
        )
        context.progress("mace: closed-form refinement", 1, 1)
        refined = {name: layer.weight.data.double().clone() for name, layer in projections}
        deltas, curves = [], []
        for start in range(0, len(units), max(1, context.batch_size)):
            chunk = data[start : start + max(1, context.batch_size)]
            found, lost = train_concept_loras(
                pipe, chunk, config, device, config.seed + start,
                lambda done: context.progress(f"mace: LoRAs {start + 1}-{start + len(chunk)}", done, config.train_steps),
            )
            deltas += found
            curves += lost
        losses = {f"lora_{i}": curve for i, curve in enumerate(curves)}
        for info, curve in zip(unit_stats, curves):
            info.update(loss_first=curve[0] if curve else None, loss_last=curve[-1] if curve else None)
        prior = prior_weight(config.fuse_preserve_scale, n_captions, config.reference_captions) * moment
        with torch.no_grad():
            for name, layer in projections:
                attn, leaf = name.rsplit(".", 1)
                tuned = [refined[name] + d[attn][0 if leaf == "to_k" else 1].double().to(device) for d in deltas]
                layer.weight.data = fused_weight(tuned, moments, originals[name], refined[name], prior, config.lamb).to(layer.weight.dtype)
        context.progress("mace: closed-form fusion", 1, 1)
        stats = {"units": unit_stats, "n_refinement_rows": int(erase.shape[0]), "prior": prior_info, "edited": len(projections)}
        return stats, losses
