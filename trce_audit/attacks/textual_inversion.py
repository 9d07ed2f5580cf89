"""Textual inversion as concept inversion runs it: the original model draws the training images, the
audited model's denoising loss trains one input embedding.

Per optimiser step: ``gradient_accumulation`` micro-batches of ``train_batch_size`` images (shuffled passes
over the training set), each image flipped left-right with probability ``flip_p``, x_0 a VAE posterior
sample of it (× scaling factor), t uniform in [0, T), loss MSE(UNet(x_t, t, E(caption)), target) over
the accumulated batch, AdamW on the one vector (the reference's AdamW updates the whole table and
then restores every other row, which leaves the same update on the placeholder's row).

The other families (SDXL, SD3, FLUX) learn one vector per text encoder (``family_caption_inputs``,
``family_loss``): the caption laid out for each tokenizer with the placeholder as one slot, every
encoder's lookup overridden there by its own vector, and the family's own loss (its forward process,
denoiser call and target: models/families); AdamW on all the vectors at once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..generation import learned_tokens as lt
from ..generation.learned_tokens import layout
from ..models import tokens as tk
from ..records import PromptRow
from . import diffusion as dm


def training_rows(seed_rows: list[PromptRow], n_images: int, salt: str = "concept-inversion") -> list[PromptRow]:
    """``n_images`` prompts cycled over the seed prompts, each with a generation seed of its own that
    is never the row's evaluation seed: the embedding is learned from other images than those scored."""
    rows = []
    for j in range(n_images):
        seed = seed_rows[j % len(seed_rows)]
        derived = int(hashlib.sha256(f"{salt}:{int(seed.seed)}:{j}".encode()).hexdigest()[:15], 16)
        rows.append(PromptRow(seed.text, derived if derived != int(seed.seed) else derived + 1, seed.guidance))
    return rows


def training_posteriors(pipe: Any, rows: list[PromptRow], *, steps: int, device: str, generation: Any = None) -> tuple[Any, Any]:
    """VAE posterior (mean, std) of each row's image, as drawn by ``pipe`` (at the run's image size
    when ``generation`` sets one) and stored as 8-bit RGB, and of its mirror image: tensors
    [2 (plain, flipped), n, C, h, w]."""
    import torch  # torch stays off the light path: listing attacks imports this module

    from ..generation.engine import BatchSampler  # the engine imports torch and diffusers at top

    sampler = BatchSampler(pipe, dm.image_settings(pipe, steps, device, generation))
    means, stds = [], []
    for start in range(0, len(rows), 8):
        images = torch.from_numpy(sampler.sample(rows[start : start + 8])).permute(0, 3, 1, 2).float().to(device)
        pixels = images / 127.5 - 1.0  # the reference's preprocessing of the saved images
        with torch.no_grad():
            plain, flipped = pipe.vae.encode(pixels).latent_dist, pipe.vae.encode(pixels.flip(-1)).latent_dist
        means.append(torch.stack([plain.mean, flipped.mean]))
        stds.append(torch.stack([plain.std, flipped.std]))
    return torch.cat(means, dim=1), torch.cat(stds, dim=1)


def caption_inputs(pipe: Any, captions: list[str], token: str, slot_id: int, device: str) -> tuple[Any, Any, Any]:
    """(ids [n, L], frozen input embeddings [n, L, d], slot mask [n, L, 1]) of the training captions."""
    import torch

    laid = [layout(pipe.tokenizer, caption, token, slot_id) for caption in captions]
    ids = torch.tensor([row_ids for row_ids, _ in laid], device=device)
    mask = torch.zeros(ids.shape + (1,), dtype=torch.bool, device=device)
    for i, (_, positions) in enumerate(laid):
        mask[i, positions] = True
    with torch.no_grad():
        base = tk.token_embedding(pipe.text_encoder)(ids)
    return ids, base, mask


def denoising_loss(pipe: Any, vector: Any, inputs: tuple[Any, Any, Any], x0: Any, noise: Any, t: Any) -> Any:
    """The textual-inversion loss of ``vector`` on one batch (inputs already indexed to the batch)."""
    import torch

    ids, base, mask = inputs
    hidden = tk.encode_embeds(pipe.text_encoder, ids, torch.where(mask, vector.to(base.dtype), base))
    pred = dm.predict_noise(pipe, dm.add_noise(pipe, x0, noise, t), t, hidden, ids=ids)
    return torch.nn.functional.mse_loss(pred.float(), dm.training_target(pipe, x0, noise, t).float())


def fixed_draws(posteriors: tuple[Any, Any], n_draws: int, n_train: int, seed: int) -> tuple[Any, Any, Any, Any]:
    """(image index, x_0, noise, t) of ``n_draws`` fixed draws (posterior means, unflipped, timesteps
    spread evenly over [0, T)): the same loss before and after training, comparable across runs."""
    import torch

    means = posteriors[0][0]
    index = torch.arange(n_draws) % means.shape[0]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(means[index].shape, generator=generator).to(means.device)
    t = ((torch.arange(n_draws) + 0.5) * n_train / n_draws).long().to(means.device)
    return index, means[index], noise, t


def family_caption_inputs(pipe: Any, captions: list[str], token: str, slot_ids: dict[str, int], device: str,
                          max_sequence_length: int | None = None) -> dict[str, tuple[Any, Any]]:
    """{encoder key: (ids [n, L], slot mask [n, L, 1])} of the training captions, laid out for each
    of the family's tokenizers as the engine lays out a row with the learned token."""
    found = {}
    for text in dm.family(pipe).text_inputs(pipe, max_sequence_length):
        ids, mask, _ = lt.slot_batch(text, captions, [(token, slot_ids[text.key])] * len(captions), device)
        found[text.key] = (ids, mask)
    return found


def family_loss(pipe: Any, vectors: dict[str, Any], inputs: dict[str, tuple[Any, Any]], x0: Any, noise: Any, t: Any,
                guidance: Any, max_sequence_length: int | None = None) -> Any:
    """The textual-inversion loss of one vector per text encoder on one batch (inputs already indexed
    to it): the family's conditioning with the vectors at the slots, its noised latents, denoiser
    call (``guidance`` per image: FLUX-dev's embedded guidance) and target; the mean squared error."""
    family = dm.family(pipe)
    dtype = getattr(pipe, family.denoiser).dtype
    overrides = {key: (mask, vectors[key]) for key, (_, mask) in inputs.items()}
    cond = lt.encode_injected(family, pipe, {key: ids for key, (ids, _) in inputs.items()}, overrides, dtype, max_sequence_length)
    pred = family.training_prediction(pipe, family.noised(pipe, x0, noise, t), t, cond, guidance)
    return (pred.float() - family.training_target(pipe, x0, noise, t).float()).square().mean()


def optimise(pipe: Any, params: list[Any], loss_of: Any, posteriors: tuple[Any, Any], config: Any,
             generator: Any, report: Any) -> list[float]:
    """Train ``params`` (leaf tensors) in place on ``loss_of(image index, x0, noise, t)`` of each
    micro-batch; returns the loss of every optimiser step."""
    import torch

    to_latents, n_train = dm.latents_of(pipe), dm.train_timesteps(pipe)
    scale = config.train_batch_size * config.gradient_accumulation if config.scale_lr else 1
    optimizer = torch.optim.AdamW(params, lr=config.lr * scale, betas=(0.9, 0.999), weight_decay=config.weight_decay, eps=1e-8)
    queue: list[int] = []
    losses = []
    for step in range(config.budget.steps):
        optimizer.zero_grad()
        total = 0.0
        for _ in range(config.gradient_accumulation):
            index, x0, noise, t = draw_batch(posteriors, queue, config.train_batch_size, config.flip_p, to_latents, n_train, generator)
            loss = loss_of(index, x0, noise, t) / config.gradient_accumulation
            loss.backward()
            total += loss.item()
        optimizer.step()
        losses.append(total)
        report(step + 1)
    return losses


def draw_batch(posteriors: tuple[Any, Any], queue: list[int], batch_size: int, flip_p: float, to_latents: Any,
               n_train: int, generator: Any) -> tuple[Any, Any, Any, Any]:
    """One micro-batch (image index, x_0, noise, t) from shuffled passes over the training images
    (``queue`` holds the pass in progress and is consumed in place): each image flipped with
    probability ``flip_p``, x_0 a posterior sample in the denoiser's latent space (``to_latents``: the
    family's scaling, and shift), t uniform in [0, n_train)."""
    import torch

    means, stds = posteriors
    while len(queue) < batch_size:
        queue += torch.randperm(means.shape[1], generator=generator).tolist()
    index = torch.tensor(queue[:batch_size])
    del queue[:batch_size]
    flip = (torch.rand(len(index), generator=generator) < flip_p).long()
    mean, std = means[flip, index], stds[flip, index]
    x0 = to_latents(mean + std * torch.randn(mean.shape, generator=generator).to(mean.device))
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    t = torch.randint(0, n_train, (len(index),), generator=generator).to(x0.device)
    return index, x0, noise, t
