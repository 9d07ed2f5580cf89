"""AdvUnlearn's outer loop: per iteration, an attack round (when due) against the current text encoder,
then one Adam step of the encoder on ESD's loss for the adversarial prompt plus the retain regulariser."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...models.tokens import tokenize
from ..common import ddim_scheduler, encode_prompts, frozen_copy, latent_shape
from ..esd_target import negative_guidance_target
from .attack import AttackStep, PrefixedPrompt, random_prefix, soft_prompt_attack
from .plan import Iteration, RetainDraws, encoder_parameters, plan_iterations, sample_block

if TYPE_CHECKING:
    from ...data.concepts import Concept
    from ..base import EraseContext
    from .config import AdvUnlearnConfig


def train_text_encoder(
    pipe, concept: "Concept", config: "AdvUnlearnConfig", context: "EraseContext", label: str
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """(stats, loss curves) of adversarial training of ``pipe``'s text encoder, in place."""
    phrases = [config.prompt] if config.prompt else list(concept.keywords)
    rng = random.Random(config.seed)
    use_retain = config.retain_batch > 0 and config.retain_loss_w > 0
    retain = RetainDraws(context.caption_list(config.caption_set, config.n_retain or None), rng) if use_retain else None
    plan = plan_iterations(config, phrases, retain, rng)
    params = encoder_parameters(pipe.text_encoder, config.train_layers, config.component, config.norm_layer)
    trainer = Trainer(pipe, config, [p for _, p in params], context, label=label)
    losses = trainer.run(plan)
    tenth = max(1, len(losses["advunlearn"]) // 10)
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    stats = {
        "prompts": phrases,
        "iterations": len(plan),
        "attack_rounds": trainer.rounds,
        "trainable_tensors": len(params),
        "trainable": [n for n, _ in params],
        "retain_prompts": len(retain.prompts) if retain else 0,
        "loss_first": mean(losses["advunlearn"][:tenth]),
        "loss_last": mean(losses["advunlearn"][-tenth:]),
        "attack_loss_first_round": mean(trainer.first_round),
        "attack_loss_last_round": mean(trainer.last_round),
    }
    return stats, losses


class Trainer:
    def __init__(self, pipe, config, params: list, context, label: str):
        self.pipe, self.config, self.params, self.context, self.label = pipe, config, params, context, label
        self.device = context.device
        self.original = frozen_copy(pipe.text_encoder).to(self.device)  # E₀: targets and x_t sampling
        self.original_pipe = SimpleNamespace(tokenizer=pipe.tokenizer, text_encoder=self.original)
        self.phrase_embeddings: dict[str, torch.Tensor] = {}
        self.unet = pipe.unet.to(self.device).requires_grad_(False).eval()  # never trained
        self.scheduler = ddim_scheduler(pipe, config.steps)
        self.shape = latent_shape(pipe, config.latent_size)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.null = self.encode_original([""])
        self.prefix = None  # the last round's adversarial prefix [1, k, D]
        self.prompts: dict[str, PrefixedPrompt] = {}
        self.rounds = 0
        self.first_round: list[float] = []
        self.last_round: list[float] = []

    def encode_original(self, texts: list[str]) -> torch.Tensor:
        return encode_prompts(self.original_pipe, texts, self.device)

    def phrase_embedding(self, phrase: str) -> torch.Tensor:
        if phrase not in self.phrase_embeddings:
            self.phrase_embeddings[phrase] = self.encode_original([phrase])
        return self.phrase_embeddings[phrase]

    def run(self, plan: list[Iteration]) -> dict[str, list[float]]:
        losses: dict[str, list[float]] = {"advunlearn": [], "unlearn": [], "retain": [], "attack": []}
        encoder = self.pipe.text_encoder.to(self.device)
        for start in range(0, len(plan), self.config.block):
            block = plan[start : start + self.config.block]
            sample_block(self.pipe, block, self.encode_original, self.scheduler, self.config.start_guidance, self.shape,
                         self.context.batch_size, self.device,
                         lambda done: self.context.progress(f"{self.label}: sampling x_t", start + min(done, len(block)), len(plan)))
            for offset, it in enumerate(block):
                if it.attack is not None:
                    losses["attack"].extend(self.attack(encoder, it))
                total, unlearn, retain = self.train_step(encoder, it)
                losses["advunlearn"].append(total)
                losses["unlearn"].append(unlearn)
                losses["retain"].append(retain)
                self.context.progress(f"{self.label}: adversarial training", start + offset + 1, len(plan))
                it.latents = {}
        encoder.eval()
        encoder.requires_grad_(False)
        return losses

    def timestep(self, stop: int):
        return self.scheduler.timesteps[stop]

    def attack(self, encoder, it: Iteration) -> list[float]:
        config = self.config
        prompt = self.prefixed(it.phrase)
        if config.attack_init == "latest" and self.prefix is not None:
            start = self.prefix
        else:
            start = random_prefix(self.original, self.pipe.tokenizer, config.adv_prompt_num, self.generator).to(self.device)
        cond = self.phrase_embedding(it.phrase)
        steps = []
        for draw in it.attack:
            x, t = it.latents[draw][None].to(self.device), self.timestep(draw.stop)
            with torch.no_grad():
                steps.append(AttackStep(x, t, self.unet(x, t, encoder_hidden_states=cond).sample))
        encoder.eval()
        for p in self.params:  # the reference freezes the encoder during the attack
            p.requires_grad_(False)
        try:
            self.prefix, losses = soft_prompt_attack(self.unet, encoder, prompt, start, steps, lr=config.attack_lr, method=config.attack_method)
        finally:
            for p in self.params:
                p.requires_grad_(True)
        self.rounds += 1
        if self.rounds == 1:
            self.first_round = losses
        self.last_round = losses
        return losses

    def prefixed(self, phrase: str) -> PrefixedPrompt:
        if phrase not in self.prompts:
            self.prompts[phrase] = PrefixedPrompt.build(self.pipe.tokenizer, self.original, phrase, self.config.adv_prompt_num, self.device)
        return self.prompts[phrase]

    def train_step(self, encoder, it: Iteration) -> tuple[float, float, float]:
        config = self.config
        t = self.timestep(it.unlearn.stop)
        x = it.latents[it.unlearn][None].to(self.device)
        cond = self.phrase_embedding(it.phrase)
        with torch.no_grad():
            both = self.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([cond, self.null])).sample
            eps_c, eps_u = both.chunk(2)
            target = negative_guidance_target(eps_c, eps_u, config.negative_guidance)
        encoder.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.prefix is None:  # warm-up: the plain phrase
            erased = encoder(tokenize(self.pipe.tokenizer, [it.phrase]).to(self.device))[0]
        else:
            erased = self.prefixed(it.phrase).encode(encoder, self.prefix)
        unlearn = F.mse_loss(self.unet(x, t, encoder_hidden_states=erased).sample, target)
        retain = torch.zeros((), device=self.device)
        if it.retain:
            texts = [d.prompt for d in it.retain]
            xr = torch.stack([it.latents[d] for d in it.retain]).to(self.device)
            with torch.no_grad():
                kept = self.unet(xr, t, encoder_hidden_states=self.encode_original(texts)).sample
            now = encoder(tokenize(self.pipe.tokenizer, texts).to(self.device))[0]
            retain = F.mse_loss(self.unet(xr, t, encoder_hidden_states=now).sample, kept)
        loss = unlearn + config.retain_loss_w * retain
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), float(unlearn.detach()), float(retain.detach())
