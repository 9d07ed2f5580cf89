"""AdvUnlearn's inner maximisation: a soft prompt of ``k`` free token embeddings put in front of the
concept phrase (the reference's ``--attack_type prefix_k``, ``--attack_embd_type word_embd``), optimised
so that the *current* erased text encoder makes the UNet predict what the original model predicted for
the phrase. Follows ``train-scripts/utils/attack_util.py`` (``init_adv``, ``soft_prompt_attack``,
``split_embd``/``construct_embd``) of github.com/OPTML-Group/AdvUnlearn (docs/fidelity.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ...models.tokens import content_ids, encode_embeds, full_ids, token_embedding


@dataclass
class PrefixedPrompt:
    """A phrase laid out as [SoT] + k adversarial slots + its tokens + [EoT] + padding (77 in all).

    The slots shift the phrase right and push the last k padding rows out, as the reference's
    ``construct_embd(prefix_k)`` does; ``ids`` only locate [EoT] for the pooled output, which is unused."""

    ids: torch.Tensor  # [1, 77]
    embeds: torch.Tensor  # [1, 77, D] token embeddings (no position embedding), slots included
    k: int

    @classmethod
    def build(cls, tokenizer, text_encoder, phrase: str, k: int, device) -> "PrefixedPrompt":
        # the slots' ids matter only for where [EoT] is found (the pooled output, unused); the reference's
        # are whichever ids its word-count split dropped, [EoT] when the phrase is one token per word
        placeholder = tokenizer.eos_token_id
        content = content_ids(tokenizer, phrase)[: int(tokenizer.model_max_length) - 2 - k]
        ids = torch.tensor([full_ids(tokenizer, [placeholder] * k + content)], device=device)
        with torch.no_grad():
            embeds = token_embedding(text_encoder)(ids).detach()
        return cls(ids, embeds, k)

    def with_prefix(self, prefix: torch.Tensor) -> torch.Tensor:
        """The token embeddings with ``prefix`` [1, k, D] in the slots (differentiable in ``prefix``)."""
        return torch.cat([self.embeds[:, :1], prefix.to(self.embeds.dtype), self.embeds[:, 1 + self.k :]], dim=1)

    def encode(self, text_encoder, prefix: torch.Tensor) -> torch.Tensor:
        return encode_embeds(text_encoder, self.ids, self.with_prefix(prefix))


def random_prefix(text_encoder, tokenizer, k: int, generator: torch.Generator) -> torch.Tensor:
    """Embeddings of k tokens drawn uniformly from the whole vocabulary (the reference's ``init_adv``
    without a previous embedding: ``randint(0, len(tokenizer))``, special tokens included)."""
    table = token_embedding(text_encoder).weight
    ids = torch.randint(0, min(len(tokenizer), table.shape[0]), (k,), generator=generator)
    return table[ids.to(table.device)].detach().clone()[None]


@dataclass
class AttackStep:
    """One draw of the attack loop: x_t, its timestep and the original model's ε for the plain phrase."""

    latent: torch.Tensor
    timestep: Any
    target: torch.Tensor


def soft_prompt_attack(
    unet, text_encoder, prompt: PrefixedPrompt, prefix: torch.Tensor, steps: Sequence[AttackStep], *, lr: float, method: str,
) -> tuple[torch.Tensor, list[float]]:
    """Minimise ‖ε(x_t, E(prefix + phrase)) − ε₀(x_t, E₀(phrase))‖² over ``prefix`` with Adam.

    ``method`` "pgd" steps on the gradient, "fast_at" on its sign (the reference's two branches; neither
    projects onto a norm ball). The text encoder and UNet are not updated here."""
    prefix = prefix.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([prefix], lr=lr)
    losses: list[float] = []
    for step in steps:
        cond = prompt.encode(text_encoder, prefix)
        loss = torch.nn.functional.mse_loss(unet(step.latent, step.timestep, encoder_hidden_states=cond).sample, step.target)
        # the reference never zeroes the prefix's gradient, so it sums over the round; we take each
        # step's own gradient, as the paper's PGD does (docs/fidelity.md, AdvUnlearn item 3)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if method == "fast_at":
            prefix.grad.sign_()
        optimizer.step()
        losses.append(float(loss.detach()))
    return prefix.detach(), losses
