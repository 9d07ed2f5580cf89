"""MACE's erase: the concepts' images and masks from the original model, closed-form refinement, one
LoRA per concept, closed-form fusion (the stages of ``mace/__init__.py``'s docstring; torch at import)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch

from ...models.families.sd import cross_attention_projections
from ..trce.stage1 import cached_prior
from ..trce.templates import augment
from ..uce import closed_form_edit
from .closed_form import concept_positions, fused_weight, prior_weight, prompt_moment, refinement_rows
from .lora import train_concept_loras
from .masks import concept_data

if TYPE_CHECKING:
    from ...data.concepts import Concept
    from ..base import EraseContext
    from .config import MACEConfig


def erase_units(
    pipe, concept: "Concept", config: "MACEConfig", units: list[tuple[str, str]], context: "EraseContext"
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """(stats, loss curves): ``units`` are the (phrase, guide) pairs, one LoRA each."""
    device = context.device
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
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
