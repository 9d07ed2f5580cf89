"""TRCE stage 1 on FLUX (an extension of ours; TRCE's paper and code are SD 1.4 only).

FLUX reads text through two linear maps whose inputs are fixed per prompt: ``context_embedder`` (the T5
sequence) and ``time_text_embed.text_embedder.linear_1`` (CLIP's pooled embedding). Stage 1's closed
form is applied to each with its own rows:
- T5 rows, mapped as on SD with T5's layout: the first end token is ``</s>`` (T5 has no start token,
  so the [SoT] weight has no row), padding rows after it, keyword rows; the caption prior is the moment
  of the captions' T5 rows (all, or up to ``</s>`` with ``prior_rows = "prompt"``);
- the pooled row of each prompt (CLIP's pooled output is read at its [EoT]), weighted as the [EoT] row,
  with the captions' pooled rows as its prior.
The joint blocks' ``add_k_proj``/``add_v_proj`` read the text stream after timestep-modulated norms and
joint attention with the image tokens, so their inputs are not fixed rows and no closed form applies;
they are among what stage 2 trains on FLUX (stage2.py). Reference mode is SD's arithmetic only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ...errors import ConfigError
from ...models.families import load_family
from ..common import solve_closed_form
from ..uce_families import FLUX_POOLED_PROJECTION, flux_t5_length
from .stage1 import RowMap, edit_prompts, find_subsequence, row_moments

if TYPE_CHECKING:
    from ...data.concepts import Concept
    from ..base import EraseContext
    from .config import TRCEConfig


def t5_row_map(tokenizer, item, weights, length: int) -> RowMap:
    """The T5 rows of a malicious prompt and the safe twin's rows they map onto, with weights."""
    _, w_eot, w_pad, w_key = weights
    ids = tokenizer(item.malicious, truncation=True, max_length=length).input_ids
    eot_bad = len(ids) - 1
    eot_good = len(tokenizer(item.safe, truncation=True, max_length=length).input_ids) - 1
    last = length - 1
    rows = [(eot_bad, eot_good, w_eot)]
    rows += [(i, i if i > eot_good else last, w_pad) for i in range(eot_bad + 1, length)] if w_pad else []
    part = tokenizer(item.keyword, add_special_tokens=False).input_ids if item.keyword else []
    start = find_subsequence(ids, part) if part else None
    rows += [(k, last, w_key) for k in range(start, start + len(part))] if start is not None else []
    rows = [r for r in rows if r[2] > 0]
    return RowMap(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(float(r[2]) for r in rows))


@torch.no_grad()
def encoded(pipe, texts: list[str], device, length: int, batch_size: int):
    """(T5 states [N, L, D], pooled CLIP [N, P]) in float64."""
    family = load_family("flux")
    states, pooled = [], []
    for start in range(0, len(texts), batch_size):
        cond = family.encode(pipe, texts[start : start + batch_size], device, torch.float32, length)
        states.append(cond.states.double())
        pooled.append(cond.pooled.double())
    return torch.cat(states), torch.cat(pooled)


def prior_moments(pipe, captions: list[str], rows: str, device, length: int, batch_size: int):
    """(Σ c·cᵀ over the captions' T5 rows, Σ p·pᵀ over their pooled rows), float64."""
    t5, pooled = None, None
    for start in range(0, len(captions), batch_size):
        chunk = captions[start : start + batch_size]
        states, pools = encoded(pipe, chunk, device, length, batch_size)
        if rows == "prompt":
            ends = [len(pipe.tokenizer_2(c, truncation=True, max_length=length).input_ids) for c in chunk]
            flat = torch.cat([states[i, :end] for i, end in enumerate(ends)])
        else:
            flat = states.reshape(-1, states.shape[-1])
        t5 = flat.T @ flat if t5 is None else t5 + flat.T @ flat
        pooled = pools.T @ pools if pooled is None else pooled + pools.T @ pools
    return t5, pooled


def refined(layer, cross, second, prior, lamb: float) -> None:
    eye = torch.eye(second.shape[0], dtype=torch.float64, device=second.device)
    shared = solve_closed_form(cross + prior + lamb * eye, second + prior + lamb * eye)
    with torch.no_grad():
        layer.weight.data = (layer.weight.data.double() @ shared.to(layer.weight.device)).to(layer.weight.dtype)


def run_stage1_flux(pipe, concept: "Concept", config: "TRCEConfig", context: "EraseContext") -> dict[str, Any]:
    if config.reference:
        raise ConfigError("trce's reference mode reproduces the SD 1.4 code; on flux use mode=default")
    length, batch = flux_t5_length(pipe), context.batch_size * 4
    items = edit_prompts(concept, config)
    maps = [t5_row_map(pipe.tokenizer_2, item, config.token_weights, length) for item in items]
    context.progress("stage 1: closed form", 0, 1)
    bad, bad_pooled = encoded(pipe, [i.malicious for i in items], context.device, length, batch)
    good, good_pooled = encoded(pipe, [i.safe for i in items], context.device, length, batch)
    cross, second = row_moments(bad, good, maps)
    w_eot = config.token_weights[1]
    pooled_cross = w_eot * good_pooled.T @ bad_pooled / len(items)
    pooled_second = w_eot * bad_pooled.T @ bad_pooled / len(items)
    scale = config.effective_preserve_scale
    t5_prior, pooled_prior = torch.zeros_like(second), torch.zeros_like(pooled_second)
    n_captions = 0
    if scale > 0:
        captions = context.caption_list(config.caption_set, config.n_captions)
        n_captions = len(captions)
        t5_moment, pooled_moment = prior_moments(pipe, captions, config.prior_rows, context.device, length, batch)
        t5_prior, pooled_prior = scale * t5_moment / n_captions, scale * pooled_moment / n_captions
    modules = dict(pipe.transformer.named_modules())
    refined(modules["context_embedder"], cross, second, t5_prior, config.lamb)
    edited = ["transformer.context_embedder.weight"]
    if w_eot > 0:
        refined(modules[FLUX_POOLED_PROJECTION], pooled_cross, pooled_second, pooled_prior, config.lamb)
        edited.append(f"transformer.{FLUX_POOLED_PROJECTION}.weight")
    context.progress("stage 1: closed form", 1, 1)
    return {"n_edit_prompts": len(items), "n_rows": sum(len(m.weights) for m in maps), "preserve_scale": scale,
            "prior": {"caption_set": config.caption_set if scale > 0 else None, "n_captions": n_captions},
            "t5_length": length, "edited": len(edited)}
