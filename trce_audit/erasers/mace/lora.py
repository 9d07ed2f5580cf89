"""MACE stage 2: per concept, a rank-r LoRA on every cross-attention to_k / to_v, trained so that the
concept tokens' attention inside the concept's mask goes to zero (``src/cfr_lora_training.py``,
``src/cfr_utils.py`` ``AttnController``, ``src/mace_lora_atten_processor.py`` of Shilin-LU/MACE).

The loss is Σ over cross-attention layers of the Frobenius norm of the attention probabilities at the
mask's pixels (the mask resized to the layer's grid, nearest) and the concept positions, on images of
the concept noised to a uniformly drawn timestep. The UNet's own weights stay frozen.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F


class StackedLoRA(torch.nn.Module):
    """One rank-r LoRA per unit (ΔWᵤ = upᵤ·downᵤ), applied to sample u of a batch of units; ``up`` starts
    at zero (as diffusers' LoRALinearLayer) so training starts from the base projection."""

    def __init__(self, d_in: int, d_out: int, rank: int, generators: list[torch.Generator]):
        super().__init__()
        self.down = torch.nn.Parameter(torch.stack([torch.randn(rank, d_in, generator=g) for g in generators]) / rank)
        self.up = torch.nn.Parameter(torch.zeros(len(generators), d_out, rank))

    def forward(self, x):  # x [units, L, d_in]
        return torch.bmm(torch.bmm(x, self.down.transpose(1, 2)), self.up.transpose(1, 2))

    def delta(self, unit: int) -> torch.Tensor:
        return (self.up[unit] @ self.down[unit]).detach()


class ProbedCrossAttention:
    """Cross-attention that exposes its probabilities [B·heads, HW, 77] to ``observe`` and optionally
    adds LoRAs to the key and value projections (the arithmetic of diffusers' AttnProcessor)."""

    def __init__(self, observe: Callable[[torch.Tensor], None], lora_k: Optional[StackedLoRA] = None, lora_v: Optional[StackedLoRA] = None):
        self.observe, self.lora_k, self.lora_v = observe, lora_k, lora_v

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        residual = hidden_states
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.norm_cross and encoder_hidden_states is not None:
            context = attn.norm_encoder_hidden_states(context)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key, value = attn.to_k(context), attn.to_v(context)
        if self.lora_k is not None:
            key, value = key + self.lora_k(context), value + self.lora_v(context)
        probs = attn.get_attention_scores(query, attn.head_to_batch_dim(key), attention_mask)
        self.observe(probs)
        out = attn.batch_to_head_dim(torch.bmm(probs, attn.head_to_batch_dim(value)))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def cross_attention_modules(unet) -> dict[str, torch.nn.Module]:
    return {name: module for name, module in unet.named_modules() if name.endswith("attn2")}


def install(unet, make: Callable[[str, torch.nn.Module], ProbedCrossAttention]) -> dict:
    """Replace every attn2 processor; returns the previous processors to restore with ``restore``."""
    previous = dict(unet.attn_processors)
    processors = {}
    for key in previous:
        name = key[: -len(".processor")]
        module = unet.get_submodule(name)
        processors[key] = make(name, module) if name.endswith("attn2") else previous[key]
    unet.set_attn_processor(processors)
    return previous


def restore(unet, previous: dict) -> None:
    unet.set_attn_processor(previous)


def masked_attention_loss(recorded: list[torch.Tensor], positions: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Σ‖A[mask pixels, positions]‖_F over the recorded layers (one image, mask [1,1,H,W] or None)."""
    total = torch.zeros(())
    for probs in recorded:
        side = int(round(probs.shape[1] ** 0.5))
        chosen = probs[:, :, positions]
        if mask is not None:
            inside = (F.interpolate(mask, size=(side, side), mode="nearest") > 0.5).view(-1)
            chosen = chosen[:, inside]
        total = total + torch.linalg.norm(chosen)
    return total


def train_concept_loras(pipe, units, config, device, seed: int, report=None):
    """One LoRA per unit on every attn2 to_k / to_v. ``units`` is a list of (images [N,3,H,W] in [0,1],
    masks [N,1,H,W] or None, prompts, positions [P,77]). The units go through the UNet as one batch, one
    sample each: samples do not interact, AdamW is elementwise and the gradient is clipped per unit, so
    this is the reference's one-at-a-time training with its own random draws per unit. Returns
    ([{attn2 name: (ΔK, ΔV)} per unit], [losses per unit])."""
    unet, count = pipe.unet, len(units)
    generators = [torch.Generator().manual_seed(seed + u) for u in range(count)]  # unit u's own draws
    dim = unet.config.cross_attention_dim
    loras = {name: tuple(StackedLoRA(dim, layer.out_features, config.rank, generators).to(device, unet.dtype)
                         for layer in (m.to_k, m.to_v)) for name, m in cross_attention_modules(unet).items()}
    with torch.no_grad():
        states, latents = [], []
        for images, _, prompts, _ in units:
            ids = torch.cat([pipe.tokenizer(p, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                            truncation=True, return_tensors="pt").input_ids for p in prompts])
            states.append(pipe.text_encoder(ids.to(device))[0].to(unet.dtype))
            latents.append(pipe.vae.encode((images * 2 - 1).to(device)).latent_dist)
    recorded: list[torch.Tensor] = []
    previous = install(unet, lambda name, m: ProbedCrossAttention(recorded.append, *loras[name]))
    params = [p for pair in loras.values() for lora in pair for p in lora.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    losses: list[list[float]] = [[] for _ in units]
    orders: list[list[int]] = [[] for _ in units]
    try:
        for step in range(config.train_steps):
            batch = [_draw(pipe, units[u], latents[u], states[u], orders[u], generators[u], device) for u in range(count)]
            recorded.clear()
            unet(torch.cat([b[0] for b in batch]), torch.cat([b[1] for b in batch]),
                 encoder_hidden_states=torch.cat([b[2] for b in batch]))
            # rows are unit-major: [unit 0's heads, unit 1's heads, ...]; SD 2.x layers differ in head count
            split = [r.unflatten(0, (count, -1)) for r in recorded]
            per_unit = [masked_attention_loss([r[u] for r in split], b[3], b[4]) for u, b in enumerate(batch)]
            optimizer.zero_grad(set_to_none=True)
            torch.stack(per_unit).sum().backward()
            _clip_per_unit(params, count, config.max_grad_norm)
            optimizer.step()
            for u, loss in enumerate(per_unit):
                losses[u].append(float(loss.detach()))
            if report is not None:
                report(step + 1)
    finally:
        recorded.clear()
        restore(unet, previous)
    deltas = [{name: (k.delta(u), v.delta(u)) for name, (k, v) in loras.items()} for u in range(count)]
    return deltas, losses


def _draw(pipe, unit, latent_dist, states, order, generator, device):
    """One training sample of a unit: (noisy latent, timestep, text state, positions, mask)."""
    images, masks, prompts, positions = unit
    if not order:  # the reference's shuffled DataLoader: every image once per epoch
        order.extend(torch.randperm(len(images), generator=generator).tolist())
    i = order.pop()
    k = int(torch.randint(len(prompts), (1,), generator=generator))
    mean, std = latent_dist.mean[i : i + 1], latent_dist.std[i : i + 1]
    latents = (mean + std * torch.randn(mean.shape, generator=generator).to(device)) * pipe.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator).to(device)
    t = torch.randint(pipe.scheduler.config.num_train_timesteps, (1,), generator=generator).to(device)
    mask = None if masks is None else masks[i : i + 1].to(device)
    return pipe.scheduler.add_noise(latents, noise, t), t, states[k : k + 1], positions[k].to(device), mask


def _clip_per_unit(params, count: int, max_norm: float) -> None:
    """clip_grad_norm_ for each unit's slice of every stacked parameter (its own LoRA)."""
    with torch.no_grad():
        norms = torch.sqrt(sum(p.grad.pow(2).flatten(1).sum(1) for p in params if p.grad is not None))
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p in params:
            if p.grad is not None:
                p.grad.mul_(scale.view(count, *([1] * (p.grad.dim() - 1))))
