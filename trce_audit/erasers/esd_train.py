"""ESD's fine-tune (esd.py's docstring): x_t sampled up front by the frozen model, then one Adam step per
iteration towards the negatively guided target. Torch at import: esd.py imports this when it erases."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch

from ..models.families import load_family, pipeline_family
from .common import cast_conditioning, ddim_scheduler, encode_conditioning, frozen_copy, latent_shape, sample_states
from .esd_target import negative_guidance_target

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from .base import EraseContext


def is_linear_or_conv(module) -> bool:
    return isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))


# The CompVis script's noxattn set skips `out.` (norm + output conv) and `time_embed`; in diffusers
# names those are conv_norm_out/conv_out and time_embedding (esd_sd.py dropped the exclusion).
NOXATTN_EXCLUDED_PREFIXES = ("conv_out", "conv_norm_out", "time_embedding")


def esd_parameters(unet, method: str) -> list[tuple[str, Any]]:
    """Parameters of Linear/Conv2d modules inside (xattn) or outside (noxattn) the cross-attention, or of
    its key and value projections alone (xattn-strict, esd_sdxl.py's esd-x-strict); noxattn leaves out
    the output and time-embedding layers, as the original script does."""
    chosen = []
    unet.requires_grad_(False)
    for name, module in unet.named_modules():
        if not is_linear_or_conv(module):
            continue
        inside = "attn2" in name
        if method == "xattn-strict":
            inside = inside and name.endswith(("attn2.to_k", "attn2.to_v"))
            method_inside = True
        else:
            method_inside = method == "xattn"
        if method == "noxattn" and name.startswith(NOXATTN_EXCLUDED_PREFIXES):
            continue
        if method_inside == inside:
            for leaf, param in module.named_parameters(recurse=False):
                param.requires_grad_(True)
                chosen.append((f"{name}.{leaf}", param))
    return chosen


def fine_tune_unet(
    pipe, concept: "Concept", config, context: "EraseContext", *, label: str, method: str
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """(stats, loss curve) of fine-tuning ``pipe.unet``'s ``method`` parameters (xattn or noxattn) in place,
    with an ``ESDConfig`` (untyped here: naming it would import esd.py, which imports this module)."""
    device = context.device
    prompts = [config.prompt] if config.prompt else concept.keywords
    family = load_family(pipeline_family(pipe))
    emb = encode_conditioning(pipe, prompts, device)
    null = encode_conditioning(pipe, [""], device)
    scheduler = ddim_scheduler(pipe, config.steps)
    base = frozen_copy(pipe.unet).to(device)
    shape = latent_shape(pipe, config.latent_size)
    rng = random.Random(config.seed)
    # (phrase, step to stop at, noise seed) per iteration. The frozen model samples x_t, so every
    # x_t can be drawn up front in batches (sorted by stop step so a batch stops together).
    plan = [(it % len(prompts), rng.randint(0, config.steps - 1), rng.randrange(2**31)) for it in range(config.iterations)]
    order = sorted(range(len(plan)), key=lambda i: plan[i][1])
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(plan[i][2])) for i in order]).to(device)
    states = sample_states(
        base, scheduler, emb.rows([plan[i][0] for i in order]), null, config.start_guidance, noise,
        [{plan[i][1]} for i in order], context.batch_size,
        lambda done: context.progress(f"{label}: sampling x_t", done, len(order)), family=family,
    )
    latents = {i: states[(j, plan[i][1])] for j, i in enumerate(order)}
    unet = pipe.unet
    params = [p for _, p in esd_parameters(unet, method)]
    unet.train()
    optimizer = torch.optim.Adam(params, lr=config.lr)
    losses: list[float] = []
    # an fp16 model's (SDXL's) layers refuse the fp32 conditioning; the loss is taken in fp32 (every
    # cast is a no-op on an fp32 model)
    null = cast_conditioning(null, unet.dtype)
    for it, (k, stop, _) in enumerate(plan):
        cond = cast_conditioning(emb.rows([k]), unet.dtype)
        x = latents[it][None].to(device, unet.dtype)
        t = scheduler.timesteps[stop]
        with torch.no_grad():
            both = family.call_denoiser(base, torch.cat([x, x]), t, cond.concat(null))
            eps_c, eps_u = both.float().chunk(2)
            target = negative_guidance_target(eps_c, eps_u, config.negative_guidance)
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(family.call_denoiser(unet, x, t, cond).float(), target)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        context.progress(f"{label}: fine-tuning", it + 1, config.iterations)
    unet.eval()
    unet.requires_grad_(False)
    tenth = max(1, len(losses) // 10)
    stats = {
        "method": method,
        "prompts": prompts,
        "iterations": len(losses),
        "trainable_tensors": len(params),
        "loss_first": sum(losses[:tenth]) / tenth,
        "loss_last": sum(losses[-tenth:]) / tenth,
    }
    return stats, {"esd": losses}
