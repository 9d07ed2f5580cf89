"""Concept inversion (Pham et al., ICLR 2024, "Circumventing Concept Erasure Methods for Text-to-Image
Generative Models"; reference NYU-DICE-Lab/circumventing-concept-erasure@bb7034b): textual inversion
on the ERASED model recovers the erased concept through a new input embedding, no weight changed.

One embedding per run: the original model draws ``n_images`` images of the seed prompts, the
audited model learns a placeholder token's embedding from them (textual_inversion.py), and every
seed prompt is evaluated with the placeholder in place of the concept's words (prepended when the
prompt names none, as the reference's I2P captions do). The rows carry the embedding as a
content-addressed safetensors file (generation/learned_tokens.py), which the engine injects.

On SD the embedding is one vector (the reference's). A family with several text encoders (SDXL's two
CLIPs; SD3's two CLIPs and T5 when it has one; FLUX's CLIP, read for its pooled output only, and T5)
learns one vector per encoder behind the same placeholder, on the family's own training loss.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..generation import learned_tokens as lt
from ..models import tokens as tk
from . import diffusion as dm
from . import textual_inversion as ti
from .base import Attack, AttackConfig, AttackContext, AttackResult, Budget, adversarial_row


@dataclass
class ConceptInversionBudget(Budget):
    steps: int = 5000  # optimiser steps (reference train.sh: --max_train_steps=5000)


@dataclass
class ConceptInversionConfig(AttackConfig):
    budget: ConceptInversionBudget = field(default_factory=ConceptInversionBudget)
    lr: float = 5e-3  # train.sh --learning_rate=5.0e-03 ...
    scale_lr: bool = True  # ... --scale_lr: times train_batch_size x gradient_accumulation (0.08)
    train_batch_size: int = 4  # --train_batch_size=4
    gradient_accumulation: int = 4  # --gradient_accumulation_steps=4
    n_images: int = 25  # --num_train_images=25
    weight_decay: float = 1e-2  # --adam_weight_decay default
    flip_p: float = 0.5  # TextualInversionDataset flip_p default
    initializer: str = ""  # one token; "" = the concept's name (train.sh: --initializer_token)
    target_steps: int = 50  # the original model's sampling steps for the training images
    eval_draws: int = 8  # fixed (image, t, noise) draws the recorded loss is measured on

    world_presets: ClassVar[dict[str, dict[str, Any]]] = {
        # 500 of 5000 steps (0.1x): about 3 minutes of one CPU thread on the pocket model.
        "pocket": {"steps": 500},
    }


def concept_words(concept: Any) -> list[str]:
    """The concept's names a prompt may use: its name and keywords without a leading article, up to
    three words, minus phrases that contain a shorter name ("red cross" holds "cross"); longest first."""
    found = {concept.name.lower()}
    for phrase in concept.keywords:
        stripped = re.sub(r"^(a|an|the)\s+", "", phrase.strip().lower())
        if stripped and len(stripped.split()) <= 3:
            found.add(stripped)
    inside = lambda short, long: short != long and re.search(rf"\b{re.escape(short)}\b", long)  # noqa: E731
    return sorted((w for w in found if not any(inside(o, w) for o in found)), key=lambda w: (-len(w), w))


def with_placeholder(text: str, words: list[str], token: str) -> tuple[str, str]:
    """(prompt with ``token`` in place of the concept's words, "replaced" or "prepended")."""
    pattern = r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"
    replaced, n = re.subn(pattern, token, text, flags=re.IGNORECASE)
    return (replaced, "replaced") if n else (f"{token} {text}", "prepended")


class ConceptInversion(Attack):
    name = "concept-inversion"
    version = "1"
    tier: ClassVar[str] = "embedding"
    Config = ConceptInversionConfig
    paper_budget = {"steps": 5000}
    needs_original = True
    families = ("sd", "sdxl", "sd3", "flux")

    def run(self, target_pipe, concept, seed_rows, *, original_pipe=None, context=None, indices=None) -> AttackResult:
        context = context or AttackContext()
        order = self.seed_indices(seed_rows, indices)
        guard = getattr(target_pipe, "trce_guard", None)
        if guard is not None and guard.retokenizes_prompts:
            raise ConfigError(f"{self.name} cannot attack a {guard.name}-guarded model: the guard re-tokenises prompt text and cannot see a learned embedding")
        token = "<" + re.sub(r"\s+", "-", concept.name.strip().lower()) + "-inversion>"
        initializer = self.config.initializer or concept.name
        family = dm.family(target_pipe)
        if family.name == "sd":
            ids = target_pipe.tokenizer(initializer, add_special_tokens=False).input_ids
            if len(ids) != 1:
                raise ConfigError(f"initializer {initializer!r} is {len(ids)} tokens; it must be one (--set initializer=WORD)")
            slots = ids[0]
        else:  # one id per tokenizer
            slots = initializer_slots(family, target_pipe, initializer, getattr(context.generation, "max_sequence_length", None))
        words = concept_words(concept)
        stats: dict[str, Any] = {"original_is_target": original_pipe is None, "placeholder": token, "initializer": initializer}
        earlier = next((row.meta for row in context.finished.values() if lt.learned_sha(row)), None)
        if earlier is None and not order:
            return AttackResult([], stats)
        if earlier is not None:  # an interrupted attempt learned it: every seed gets the same embedding
            entry, losses = earlier[lt.META_KEY], {k: earlier.get(k) for k in ("loss", "loss_initial")}
            stats["reused_embedding"] = True
        else:
            learn = self._learn if family.name == "sd" else self._learn_family
            entry, losses = learn(target_pipe, original_pipe or target_pipe, seed_rows, words, token, slots, context, stats)
        stats["embedding_sha256"] = entry["sha256"]
        rows = []
        for index in order:
            text, placement = with_placeholder(seed_rows[index].text, words, token)
            meta = {lt.META_KEY: entry, "placement": placement, "initializer": initializer, **losses}
            rows.append(context.seed_done(index, adversarial_row(seed_rows[index], text, self.name, meta)))
        return AttackResult(rows, stats)

    def _learn(self, target_pipe, original_pipe, seed_rows, words, token, slot_id, context, stats):
        """SD: one vector in its one text encoder (the reference's textual inversion)."""
        config, device = self.config, context.device
        dm.freeze(target_pipe, device)
        dm.freeze(original_pipe, device)
        images = ti.training_rows(seed_rows, config.n_images)
        posteriors = ti.training_posteriors(original_pipe, images, steps=config.target_steps, device=device, generation=context.generation)
        inputs = ti.caption_inputs(target_pipe, [with_placeholder(r.text, words, token)[0] for r in images], token, slot_id, device)
        vector = tk.token_embedding(target_pipe.text_encoder).weight[slot_id].detach().clone().requires_grad_(True)
        loss_of = lambda index, x0, noise, t: ti.denoising_loss(  # noqa: E731
            target_pipe, vector, tuple(part[index.to(part.device)] for part in inputs), x0, noise, t)
        initial, final = self._train(target_pipe, [vector], loss_of, posteriors, images, context, stats)
        path, sha = lt.save_embedding(self._folder(context), token, vector)
        entry = {"token": token, "sha256": sha, "path": str(path), "slot_id": int(slot_id)}
        return entry, {"loss": final, "loss_initial": initial}

    def _learn_family(self, target_pipe, original_pipe, seed_rows, words, token, slot_ids, context, stats):
        """One vector per text encoder of a family with several (SDXL, SD3, FLUX), on its own loss."""
        config, device = self.config, context.device
        length = getattr(context.generation, "max_sequence_length", None)
        freeze_all(target_pipe, device)
        freeze_all(original_pipe, device)
        images = ti.training_rows(seed_rows, config.n_images)
        posteriors = ti.training_posteriors(original_pipe, images, steps=config.target_steps, device=device, generation=context.generation)
        captions = [with_placeholder(r.text, words, token)[0] for r in images]
        inputs = ti.family_caption_inputs(target_pipe, captions, token, slot_ids, device, length)
        family = dm.family(target_pipe)
        vectors = {text.key: tk.input_lookup(text.encoder).weight[slot_ids[text.key]].detach().float().clone().requires_grad_(True)
                   for text in family.text_inputs(target_pipe, length)}
        # each image's guidance is the one it was drawn at (its row's): FLUX-dev reads it as an embedding
        guidance = posteriors[0].new_tensor([float(r.guidance) for r in images]).float()

        def loss_of(index, x0, noise, t):
            at = index.to(device)
            batch = {key: (ids[at], mask[at]) for key, (ids, mask) in inputs.items()}
            return ti.family_loss(target_pipe, vectors, batch, x0, noise, t, guidance[at], length)

        initial, final = self._train(target_pipe, list(vectors.values()), loss_of, posteriors, images, context, stats)
        path, sha = lt.save_vectors(self._folder(context), token, vectors)
        stats["encoders"] = {key: int(vector.shape[0]) for key, vector in vectors.items()}
        entry = {"token": token, "sha256": sha, "path": str(path), "slot_ids": {key: int(i) for key, i in slot_ids.items()}}
        return entry, {"loss": final, "loss_initial": initial}

    def _train(self, target_pipe, params, loss_of, posteriors, images, context, stats) -> tuple[float, float]:
        """(loss before, loss after) on the fixed draws around the optimiser run; the curve into ``stats``."""
        import torch  # torch stays off the light path: listing attacks imports this module

        config = self.config
        index, x0, noise, t = ti.fixed_draws(posteriors, config.eval_draws, dm.train_timesteps(target_pipe), config.seed + 1)
        x0 = dm.latents_of(target_pipe)(x0)
        with torch.no_grad():
            initial = loss_of(index, x0, noise, t).item()
        generator = torch.Generator().manual_seed(config.seed)
        curve = ti.optimise(target_pipe, params, loss_of, posteriors, config, generator,
                            lambda done: context.report(done, config.budget.steps, self.name))
        with torch.no_grad():
            final = loss_of(index, x0, noise, t).item()
        block = max(1, len(curve) // 20)
        stats.update(n_images=len(images), training_seeds=[r.seed for r in images], loss_curve_block=block,
                     loss_curve=[sum(curve[i : i + block]) / len(curve[i : i + block]) for i in range(0, len(curve), block)])
        return initial, final

    @staticmethod
    def _folder(context: AttackContext) -> Path:
        return context.artefact_dir or Path(tempfile.gettempdir()) / "trce-audit-embeddings"


def initializer_slots(family: Any, pipe: Any, initializer: str, max_sequence_length: int | None) -> dict[str, int]:
    """{encoder key: the initializer's one id in that encoder's tokenizer}; a one-line ConfigError
    naming the first tokenizer in which it is not one token."""
    slots = {}
    for text in family.text_inputs(pipe, max_sequence_length):
        ids = text.tokenizer(initializer, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ConfigError(f"initializer {initializer!r} is {len(ids)} tokens in {text.component} ({text.key}) of this {family.name} model; "
                              "it must be one token in every tokenizer (--set initializer=WORD)")
        slots[text.key] = int(ids[0])
    return slots


def freeze_all(pipe: Any, device: str) -> None:
    """Move a pipeline to ``device`` with every module frozen (diffusion.freeze names SD's parts)."""
    pipe.to(device)
    for module in pipe.components.values():
        if hasattr(module, "requires_grad_"):  # the torch modules, not the tokenizers or the scheduler
            module.requires_grad_(False)
            module.eval()
