"""MMA-Diffusion (Yang et al., CVPR 2024), its text-modal attack: GCG over the text encoder alone.

For each seed prompt, 20 free tokens are searched whose pooled text embedding is closest (cosine) to
the seed prompt's, with the tokens that spell the concept's words filtered out: a prompt that means
the concept to the text encoder without saying it. Each iteration takes the gradient of the loss with
respect to the one-hot tokens, samples ``candidates`` single-token swaps among each position's
``top_k`` most promising tokens, encodes them all and moves to the best; the best prompt seen is kept.
The search reads only the tokenizer and text encoder, so it never sees the erased UNet.
Reference: cure-lab/MMA-Diffusion src/textual_attack.py (docs/attacks.md lists the deviations).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..errors import ConfigError
from ..models import tokens as tk
from . import gcg
from .base import Attack, AttackConfig, AttackContext, AttackResult, Budget, adversarial_row


@dataclass
class MMABudget(Budget):
    iterations: int = 500  # the README: "typically larger than 500" (its example runs 1000)
    candidates: int = 512  # the reference's batch_size: single-token swaps encoded per iteration


@dataclass
class MMAConfig(AttackConfig):
    budget: MMABudget = field(default_factory=MMABudget)
    length: int = 20  # free tokens (the reference's control_length)
    top_k: int = 256  # tokens per position a swap is drawn from
    sensitive_filter: bool = True  # keep the concept's words and their pieces out of the prompt
    sensitive_words: str = ""  # comma-separated; "" = the words that carry the concept in its pairs
    init: Literal["letters", "random"] = "letters"  # the reference starts from 20 random letters
    vocabulary: Literal["all", "corpus"] = "all"  # as TokenSearchConfig (docs/attacks.md)
    encode_batch: int = 512  # candidates per text-encoder call (memory only)

    world_presets: ClassVar[dict[str, dict[str, Any]]] = {
        # The pocket vocabulary is its caption grammar's few hundred words; letters are not among them.
        "pocket": {"iterations": 100, "vocabulary": "corpus", "init": "random"},
    }
    runtime_fields: ClassVar[tuple[str, ...]] = ("encode_batch",)


class MMADiffusion(Attack):
    name = "mma-diffusion"
    version = "1"
    tier = "prompt"
    Config = MMAConfig
    paper_budget = {"iterations": 500, "candidates": 512}
    text_encoder_only = True

    def sensitive_words(self, concept: Any) -> list[str]:
        if not self.config.sensitive_filter:
            return []
        given = [w.strip() for w in self.config.sensitive_words.split(",") if w.strip()]
        return given or gcg.concept_words(concept)

    def run(self, target_pipe, concept, seed_rows, *, original_pipe=None, context=None, indices=None) -> AttackResult:
        import torch  # torch stays off the light path: listing attacks imports this module

        context = context or AttackContext()
        config: MMAConfig = self.config
        tokenizer, encoder = target_pipe.tokenizer, target_pipe.text_encoder
        encoder.to(context.device).requires_grad_(False)
        words = self.sensitive_words(concept)
        banned = gcg.sensitive_ids(tokenizer, words)
        allowed = [i for i in self.search_vocabulary(target_pipe, concept, seed_rows, context) if i not in banned]
        if not allowed:
            raise ConfigError(f"{self.name}: no token is left to search once the sensitive words are filtered")
        vocab = torch.tensor(allowed, device=context.device)
        length = min(config.length, tk.max_content(tokenizer))
        rows, losses = [], []
        order = self.seed_indices(seed_rows, indices)
        total = len(order) * config.budget.iterations
        for position, index in enumerate(order):
            seed = seed_rows[index]
            seed_ids = torch.tensor([tk.full_ids(tokenizer, tk.content_ids(tokenizer, seed.text))], device=context.device)
            with torch.no_grad():
                target = gcg.pooled(encoder, seed_ids)[0]
            generator = torch.Generator().manual_seed(config.seed * 100_003 + index)
            search = _Search(self, tokenizer, encoder, vocab, set(allowed), target, length, generator)
            for step in range(config.budget.iterations):
                search.step()
                context.report(position * config.budget.iterations + step + 1, total, self.name)
            check = tk.roundtrip(tokenizer, search.best_ids)
            meta = {"token_ids": search.best_ids, **check.as_meta(), "loss": search.best_loss, "loss_initial": search.initial_loss,
                    "best_iteration": search.best_step, "iterations_without_candidate": search.stuck, "init": search.init,
                    "sensitive_words": words}
            rows.append(context.seed_done(index, adversarial_row(seed, check.text, self.name, meta)))
            losses.append(search.best_loss)
        return AttackResult(rows, {"vocab_size": len(allowed), "sensitive_tokens": len(banned), "final_losses": losses})


class _Search:
    """One seed's GCG state: the current prompt, and the best one seen (the reference keeps both)."""

    def __init__(self, attack: MMADiffusion, tokenizer, encoder, vocab, allowed: set[int], target, length: int, generator):
        self.config, self.tokenizer, self.encoder, self.vocab, self.allowed = attack.config, tokenizer, encoder, vocab, allowed
        self.target, self.table = target, tk.token_embedding(encoder).weight[vocab].detach()
        self.generator, self.steps, self.stuck, self.best_step = generator, 0, 0, 0
        self.init, ids = _initial_ids(tokenizer, allowed, vocab, length, generator, attack.config.init)
        self.current = ids
        self.initial_loss = self.best_loss = float(self.losses(ids[None])[0])
        self.best_ids = ids.tolist()

    def losses(self, content) -> Any:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, content.shape[0], self.config.encode_batch):
                ids = gcg.layout(self.tokenizer, content[start : start + self.config.encode_batch].to(self.vocab.device))
                out.append(gcg.cosine_loss(gcg.pooled(self.encoder, ids), self.target).float().cpu())
        return torch.cat(out)

    def step(self) -> None:
        import torch

        self.steps += 1
        grad = gcg.token_gradients(self.encoder, self.tokenizer, self.current, self.vocab, self.target, self.table)
        sampled = gcg.sample_candidates(grad, self.current, self.vocab, candidates=self.config.budget.candidates,
                                        top_k=self.config.top_k, generator=self.generator)
        found = gcg.valid_candidates(self.tokenizer, sampled, tk.decode(self.tokenizer, self.current.tolist()), self.allowed)
        if not found:
            self.stuck += 1
            return
        ids = torch.tensor([ids for _, ids in found], device=self.vocab.device)
        losses = self.losses(ids)
        best = int(losses.argmin())
        self.current = ids[best]  # the reference always moves to the iteration's best, even if worse
        if float(losses[best]) < self.best_loss:
            self.best_loss, self.best_ids, self.best_step = float(losses[best]), ids[best].tolist(), self.steps


def _initial_ids(tokenizer, allowed: set[int], vocab, length: int, generator, init: str) -> tuple[str, Any]:
    """Random single letters (the reference's start) if the vocabulary has them, else random whole-word
    tokens that tokenise back to themselves; either way a prompt that re-tokenises to its ids."""
    import torch

    letters = [i for i in (tokenizer.convert_tokens_to_ids(f"{c}</w>") for c in string.ascii_lowercase) if i in allowed]

    def whole_word(i: int) -> bool:
        return tokenizer.convert_ids_to_tokens(i).endswith("</w>") and tk.content_ids(tokenizer, tk.decode(tokenizer, [i])) == [i]

    pool = letters if init == "letters" and letters else [i for i in vocab.tolist() if whole_word(i)]
    if not pool:
        raise ConfigError("mma-diffusion: the search vocabulary has no whole-word token to start from")
    picks = torch.randint(len(pool), (length,), generator=generator)
    return ("letters" if pool is letters else "random"), torch.tensor([pool[int(i)] for i in picks], device=vocab.device)
