"""AdvUnlearn's bookkeeping: which text-encoder tensors train, the retain-prompt draws, and the x_t the
training needs, sampled up front per block of iterations.

Every x_t the reference uses (the concept's, the retain prompts', each attack step's) is sampled by the
unchanged UNet conditioned on the *original* text encoder's embedding, so none depends on the training
state and all of them can be drawn in batches before the iterations that use them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ...models.tokens import text_root
from ..common import sample_states


def encoder_parameters(text_encoder, layers: tuple[int, ...], component: str, norm_layer: bool) -> list[tuple[str, torch.nn.Parameter]]:
    """The reference's ``param_choices`` for its ``text_encoder_*`` methods: transformer layers
    ``layers`` (() = all, ``text_encoder_full``), only their MLP ("ffn") or self-attention ("attn")
    tensors if asked; the final layer norm when ``norm_layer`` or, for all layers, when component is
    "all". Token and position embeddings never train. Everything else is frozen."""
    text_encoder.requires_grad_(False)
    chosen = []
    for name, param in text_root(text_encoder).named_parameters():
        if name.startswith("final_layer_norm"):
            keep = norm_layer or (not layers and component == "all")
        elif name.startswith("encoder.layers."):
            index = int(name.split(".")[2])
            in_part = component == "all" or (component == "ffn" and ".mlp." in name) or (component == "attn" and ".self_attn." in name)
            keep = in_part and (not layers or index in layers)
        else:
            keep = False
        if keep:
            param.requires_grad_(True)
            chosen.append((name, param))
    return chosen


class RetainDraws:
    """Retain prompts drawn without replacement, ``batch`` at a time; when fewer than ``batch`` are
    unseen the pool is refilled (the reference's ``PromptDataset`` with its ``reset`` check)."""

    def __init__(self, prompts: Sequence[str], rng: random.Random):
        self.prompts = list(prompts)
        self.rng = rng
        self.unseen: list[int] = []

    def take(self, batch: int) -> list[str]:
        if len(self.unseen) < batch:
            self.unseen = list(range(len(self.prompts)))
        picked = self.rng.sample(self.unseen, min(batch, len(self.unseen)))
        chosen = set(picked)
        self.unseen = [i for i in self.unseen if i not in chosen]
        return [self.prompts[i] for i in picked]


@dataclass(frozen=True)
class Draw:
    """One x_t: the prompt whose original embedding guides its sampling, the DDIM step it stops at and
    the seed of its initial noise."""

    prompt: str
    stop: int
    seed: int


@dataclass
class Iteration:
    phrase: str
    unlearn: Draw
    retain: list[Draw]
    attack: list[Draw] | None = None  # None: no new attack round (warm-up, or reuse the last prefix)
    latents: dict[Draw, torch.Tensor] = field(default_factory=dict)


def plan_iterations(config, phrases: Sequence[str], retain: RetainDraws | None, rng: random.Random) -> list[Iteration]:
    draw = lambda prompt: Draw(prompt, rng.randint(0, config.steps - 1), rng.randrange(2**31))  # noqa: E731
    plan: list[Iteration] = []
    phrase = phrases[0]
    for i in range(config.iterations):
        new_round = i % config.adv_prompt_update_step == 0
        if new_round:
            phrase = rng.choice(list(phrases))
        unlearn = draw(phrase)
        # the retain batch shares the concept's stop step, as in the reference's loss
        kept = [Draw(p, unlearn.stop, rng.randrange(2**31)) for p in retain.take(config.retain_batch)] if retain else []
        attack = [draw(phrase) for _ in range(config.attack_step)] if new_round and i >= config.warmup_iter else None
        plan.append(Iteration(phrase, unlearn, kept, attack))
    return plan


def sample_block(pipe, block: list[Iteration], encode: Callable[[list[str]], torch.Tensor], scheduler, guidance: float,
                 shape: tuple[int, ...], batch_size: int, device, report=None) -> None:
    """Fill ``latents`` of every iteration in ``block`` (sorted by stop step so a batch stops together)."""
    draws = sorted({d for it in block for d in [it.unlearn, *it.retain, *(it.attack or [])]}, key=lambda d: (d.stop, d.seed, d.prompt))
    texts = sorted({d.prompt for d in draws})
    emb = encode(texts)
    row = {t: i for i, t in enumerate(texts)}
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(d.seed)) for d in draws]).to(device)
    null = encode([""])
    states = sample_states(pipe.unet, scheduler, emb[[row[d.prompt] for d in draws]], null, guidance, noise,
                           [{d.stop} for d in draws], batch_size, report)
    found = {d: states[(j, d.stop)] for j, d in enumerate(draws)}
    for it in block:
        it.latents = {d: found[d] for d in [it.unlearn, *it.retain, *(it.attack or [])]}
