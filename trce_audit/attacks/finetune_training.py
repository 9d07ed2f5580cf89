"""Fine-tuning resurgence's training (torch at the top: finetune.py imports this module when a run starts).

SD at its default (lora_rank 0): the whole UNet, conditioned through the SD text path and called as the
attack always did; that arithmetic is what the stored SD and pocket results were measured with. Every
other family goes through its family object (models/families): its text encoders once (frozen), its
forward process and its training-time denoiser call, with FLUX.1-dev's guidance embedding at
``embedded_guidance``. With ``lora_rank`` > 0 only LoRA adapters (models/lora.py) are trained; the
checkpoints hold them merged into the weights. The caller's pipelines leave as they came: the base
weights restored, every module frozen on the run's device.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import ConfigError
from ..models import lora
from ..models import tokens as tk
from ..models.families.base import Conditioning
from . import diffusion as dm
from . import textual_inversion as ti

ENCODE_CHUNK = 8  # captions per text-encoder call (T5-XXL at 512 tokens is large)
CHECKPOINTED = ("sd3", "flux")  # gradient_checkpointing=none turns activation checkpointing on for these


def fine_tune(target_pipe, original_pipe, rows, config, marks: list[int], context, name: str,
              save: Callable[[int, Callable[[], Any], dict[str, Any]], None], stats: dict[str, Any]) -> list[float]:
    """Fine-tune the target's denoiser on the original's images of ``rows``; ``save(step, plain, extra)``
    at each of ``marks`` (``plain()``: the adapters merged for the save; ``extra``: the LoRA record for
    the checkpoint's marker). Returns every optimiser step's loss."""
    device = context.device
    family = dm.family(target_pipe)
    rank = config.rank_for(family.name)
    dm.freeze(target_pipe, device)
    dm.freeze(original_pipe, device)
    posteriors = ti.training_posteriors(original_pipe, rows, steps=config.target_steps, device=device, generation=context.generation)
    denoiser = getattr(target_pipe, family.denoiser)
    if family.name == "sd":
        predict = _sd_predictor(target_pipe, rows, device)
    else:
        predict = _family_predictor(target_pipe, family, rows, config, context)
    before = {k: v.detach().to("cpu", copy=True) for k, v in denoiser.state_dict().items()} if rank == 0 else None
    checkpointing = family.name in CHECKPOINTED if config.gradient_checkpointing is None else config.gradient_checkpointing
    switch = checkpointing and not getattr(denoiser, "is_gradient_checkpointing", False)
    parked = _park(target_pipe, original_pipe, denoiser, device) if family.name != "sd" else False
    try:
        extra: dict[str, Any] = {}
        if rank:
            keys = config.lora_targets or lora.SCRIPT_TARGETS.get(family.name)
            if not keys:
                raise ConfigError(f"no default LoRA targets for a {family.name} model; pass --set lora_targets=KEY,KEY")
            names = lora.target_names(denoiser, keys)
            alpha = float(rank if config.lora_alpha is None else config.lora_alpha)
            lora.attach(denoiser, names, rank, alpha, torch.Generator().manual_seed(config.seed))
            params, lr = lora.parameters(denoiser), config.lora_lr
            extra = {"lora": {"rank": rank, "alpha": alpha, "targets": [key.strip() for key in keys]}}
            stats["lora"] = {**extra["lora"], "layers": len(names), "parameters": sum(p.numel() for p in params)}
        else:
            denoiser.requires_grad_(True)
            params, lr = [p for p in denoiser.parameters() if p.requires_grad], config.lr
        if switch:
            denoiser.enable_gradient_checkpointing()
        return _train(target_pipe, denoiser, params, lr, predict, posteriors, config, marks, context, name,
                      lambda step: save(step, lambda: lora.merged(denoiser), extra))
    finally:  # the caller's pipeline leaves as it came
        if switch:
            denoiser.disable_gradient_checkpointing()
        lora.detach(denoiser)
        if before is not None:
            denoiser.load_state_dict(before)
        dm.freeze(target_pipe, device)
        if parked:
            dm.freeze(original_pipe, device)


def _train(pipe, denoiser, params, lr: float, predict, posteriors, config, marks: list[int], context, name: str,
           save: Callable[[int], None]) -> list[float]:
    """Train ``params`` in place; calls ``save(step)`` at each of ``marks``; returns every step's loss."""
    denoiser.train()
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=config.weight_decay, eps=1e-8)
    generator = torch.Generator().manual_seed(config.seed)
    to_latents, n_train = dm.latents_of(pipe), dm.train_timesteps(pipe)
    queue: list[int] = []
    losses = []
    for step in range(1, config.budget.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(config.gradient_accumulation):
            index, x0, noise, t = ti.draw_batch(posteriors, queue, config.train_batch_size, config.flip_p, to_latents, n_train, generator)
            pred = predict(dm.add_noise(pipe, x0, noise, t), t, index)
            loss = torch.nn.functional.mse_loss(pred.float(), dm.training_target(pipe, x0, noise, t).float()) / config.gradient_accumulation
            loss.backward()
            total += loss.item()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        losses.append(total)
        context.report(step, config.budget.steps, name)
        if step in marks:
            denoiser.eval()
            save(step)
            denoiser.train()
    return losses


def _sd_predictor(pipe, rows, device) -> Callable[[Any, Any, Any], Any]:
    """SD's UNet on each row's caption, encoded once through the SD text path."""
    ids = torch.tensor([tk.full_ids(pipe.tokenizer, tk.content_ids(pipe.tokenizer, r.text)) for r in rows], device=device)
    with torch.no_grad():
        hidden = tk.encode_ids(pipe.text_encoder, ids)
    unet = pipe.unet

    def predict(x_t, t, index):
        return unet(x_t, t, encoder_hidden_states=hidden[index.to(hidden.device)]).sample

    return predict


def _family_predictor(pipe, family, rows, config, context) -> Callable[[Any, Any, Any], Any]:
    """The family's training call on each row's caption, each distinct caption encoded once (at the
    run's T5 length), with the embedded guidance FLUX.1-dev trains at."""
    texts = list(dict.fromkeys(r.text for r in rows))
    where = {text: i for i, text in enumerate(texts)}
    text_of = torch.tensor([where[r.text] for r in rows])
    dtype = getattr(pipe, family.denoiser).dtype
    length = getattr(context.generation, "max_sequence_length", None)
    with torch.no_grad():
        parts = [family.encode(pipe, texts[i : i + ENCODE_CHUNK], context.device, dtype, length) for i in range(0, len(texts), ENCODE_CHUNK)]
    cond = Conditioning(*(None if field[0] is None else torch.cat(field) for field in zip(*(part.fields() for part in parts))))

    def predict(x_t, t, index):
        guidance = torch.full((x_t.shape[0],), float(config.embedded_guidance), device=x_t.device)
        return family.training_prediction(pipe, x_t.to(dtype), t, cond.rows(text_of[index]), guidance)

    return predict


def _park(target_pipe, original_pipe, denoiser, device) -> bool:
    """Move what training does not use off the accelerator: the target's text encoders and VAE (the
    captions are encoded, the images drawn) and the original pipeline. True when anything moved."""
    if torch.device(device).type == "cpu":
        return False
    parts = [part for part in dm.frozen_parts(target_pipe) if part is not denoiser]
    if original_pipe is not target_pipe:
        parts += dm.frozen_parts(original_pipe)
    for part in parts:
        part.to("cpu")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return True
