"""UCE's closed form beyond SD 1.x/2.x: which text rows each family's edited projections read.

- ``sdxl`` (an extension of ours: the reference's trainscripts@81f4950 hold no SDXL script): every
  cross-attention key/value of the UNet reads both CLIP encoders' penultimate states, concatenated; the
  rows are those at each prompt's last content token, as SD's are (the [SoT] row for the empty prompt).
- ``flux`` (rohitgandikota/unified-concept-editing ``trainscripts/uce_flux_edit.py``@81f4950):
  ``context_embedder`` reads the T5 sequence, edited on the row of each prompt's last real T5 token;
  ``time_text_embed.text_embedder.linear_1`` reads CLIP's pooled embedding, edited on it. Modules are
  chosen by name (the reference tells them apart by input width, which breaks on other shapes), and the
  T5 length is the reference's: 256 for schnell (no guidance embedding), 512 for dev; a folder that
  declares its own (pocket-flux: 48, the length it was trained and is sampled at) is edited at that one.

Each group's projections share their input rows, so one closed form W' = W·R·S⁻¹ serves them all.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..models.families import load_family, pipeline_family
from ..models.families.flux import declared_t5_length
from ..models.families.sd import cross_attention_projections
from ..models.tokens import token_count

FLUX_POOLED_PROJECTION = "time_text_embed.text_embedder.linear_1"
Rows = Callable[[list[str]], torch.Tensor]


def flux_t5_length(pipe) -> int:
    return declared_t5_length(pipe) or (512 if pipe.transformer.config.guidance_embeds else 256)


def t5_last_token(tokenizer, text: str, length: int) -> int:
    """Index of the last real T5 token (the one before </s>); 0 (</s> itself) for the empty prompt."""
    count = len(tokenizer(text, truncation=True, max_length=length).input_ids)
    return max(count - 2, 0)


def edit_groups(pipe, device) -> list[tuple[list[tuple[str, torch.nn.Linear]], Rows]]:
    """[(projections, rows(prompts) -> [N, D] float64)] for the pipeline's family (sdxl or flux)."""
    family = load_family(pipeline_family(pipe))

    @torch.no_grad()
    def encode(prompts: list[str], length: int | None = None):
        return family.encode(pipe, prompts, device, torch.float32, length)

    if family.name == "sdxl":
        def last_tokens(prompts: list[str]) -> torch.Tensor:
            states = encode(prompts).states
            index = torch.tensor([token_count(pipe.tokenizer, p) for p in prompts], device=states.device)
            return states[torch.arange(len(prompts), device=states.device), index].double()

        return [(cross_attention_projections(pipe.unet), last_tokens)]
    if family.name == "flux":
        length = flux_t5_length(pipe)
        modules = dict(pipe.transformer.named_modules())

        def t5_rows(prompts: list[str]) -> torch.Tensor:
            states = encode(prompts, length).states
            index = torch.tensor([t5_last_token(pipe.tokenizer_2, p, length) for p in prompts], device=states.device)
            return states[torch.arange(len(prompts), device=states.device), index].double()

        def pooled_rows(prompts: list[str]) -> torch.Tensor:
            return encode(prompts, length).pooled.double()

        return [([("context_embedder", modules["context_embedder"])], t5_rows),
                ([(FLUX_POOLED_PROJECTION, modules[FLUX_POOLED_PROJECTION])], pooled_rows)]
    raise ValueError(f"no UCE rows for the {family.name} family")  # UCE.families keeps others out
