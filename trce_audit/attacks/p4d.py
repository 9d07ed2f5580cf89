"""P4D (Chin et al., ICML 2024, "Prompting4Debugging"): find prompts that make the erased model
denoise like the original model does for the seed prompt.

Continuous token embeddings are optimised (AdamW), but every forward pass uses their nearest vocabulary
tokens (cosine similarity) and the gradient taken at those hard embeddings updates the continuous ones
(straight-through, as in the reference). Per iteration: a random training timestep t and noise eps on
x_0 = the VAE latent of the original model's image for the seed prompt; loss =
MSE(eps_erased(x_t, E(adversarial), t), eps_original(x_t, E(seed prompt), t)).

Variants: P4D-N optimises ``prompt_len`` free tokens; P4D-K keeps the seed prompt and optimises one
inserted token before each group of ``every_k`` seed tokens (positions 0, k+1, 2(k+1) … as in the
reference). The reference keeps the best prompt by the CLIP similarity of a generated image to the
target image every ``eval_every`` steps. Offline there are no CLIP weights, so every ``eval_every``
steps the candidate is judged by the image it makes the erased model draw (the concept's detector,
``early_stop``): the first success is kept and ends the search; otherwise the prompt with the best
denoising loss on a fixed set of (t, eps) draws is kept (see docs/attacks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..models import tokens as tk
from . import diffusion as dm
from .base import Attack, AttackContext, AttackResult, Budget, TokenSearchConfig, adversarial_row


@dataclass
class P4DBudget(Budget):
    iterations: int = 3000  # reference config "iter": 3000


@dataclass
class P4DConfig(TokenSearchConfig):
    budget: P4DBudget = field(default_factory=P4DBudget)
    prompt_len: int = 16  # P4D-N: free tokens
    every_k: int = 3  # P4D-K: one learnable token per this many seed tokens
    lr: float = 0.1
    weight_decay: float = 0.1
    eval_every: int = 50  # reference "eval_step": 50
    eval_draws: int = 4  # fixed (t, eps) draws that rank candidate prompts at each evaluation
    target_steps: int = 25  # reference "num_inference_steps": 25 for the target image
    # judge each evaluated candidate by the image the erased model draws for it and stop at the first
    # success (the reference's image-level selection, with the concept's detector in place of CLIP)
    early_stop: bool = True

    world_presets: ClassVar[dict[str, dict[str, Any]]] = {
        # 500 of 3000 iterations (0.17x): pocket UNets are ~100x smaller and the loss flattens earlier.
        "pocket": {"iterations": 500, "vocabulary": "corpus"},
    }


def layout(variant: str, seed_content: list[int], config: P4DConfig, limit: int) -> tuple[list[int], list[int]]:
    """(content ids with placeholders, learnable positions) for a variant."""
    if variant == "n":
        n = min(config.prompt_len, limit)
        return [0] * n, list(range(n))
    group = config.every_k + 1
    n_learn = len(seed_content) // config.every_k + 1
    total = min(len(seed_content) + n_learn, limit)
    learn = [i for i in range(total) if i % group == 0]
    fixed = iter(seed_content)
    content = [0 if i % group == 0 else next(fixed) for i in range(total)]
    return content, learn


class P4D(Attack):
    """Shared P4D loop; the registered plugins are the two variants below."""

    version = "2"  # 2: candidates judged by the image they produce (early_stop)
    Config = P4DConfig
    paper_budget = {"iterations": 3000}
    needs_original = True
    families = ("sd", "sdxl", "sd3", "flux")  # the last three: ours, see family_search.py
    variant: ClassVar[str] = "n"

    def run(self, target_pipe, concept, seed_rows, *, original_pipe=None, context=None, indices=None) -> AttackResult:
        import torch  # torch stays off the light path: listing attacks imports this module

        context = context or AttackContext()
        if dm.family(target_pipe).name != "sd":  # SDXL, SD3, FLUX: ours (family_search.py)
            from . import family_search  # imports torch at its top

            return family_search.p4d(self, target_pipe, concept, seed_rows, original_pipe, context, indices)
        config: P4DConfig = self.config
        device = context.device
        original_pipe, original_is_target, vocab = self.white_box_setup(target_pipe, original_pipe, concept, seed_rows, context)
        tokenizer, text_encoder = target_pipe.tokenizer, target_pipe.text_encoder
        embedding = tk.token_embedding(text_encoder)
        vocab_unit = torch.nn.functional.normalize(embedding.weight[vocab].detach(), dim=-1)
        n_train = dm.train_timesteps(target_pipe)
        order = self.seed_indices(seed_rows, indices)
        total = len(order) * config.budget.iterations
        rows = []
        for position, index in enumerate(order):
            seed = seed_rows[index]
            generator = torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + index)
            x0 = dm.target_latents(original_pipe, seed, steps=config.target_steps, device=device, use_mean=False)
            seed_ids = torch.tensor([tk.full_ids(original_pipe.tokenizer, tk.content_ids(original_pipe.tokenizer, seed.text))], device=device)
            with torch.no_grad():
                seed_hidden = tk.encode_ids(original_pipe.text_encoder, seed_ids)
            content, learn = layout(self.variant, tk.content_ids(tokenizer, seed.text), config, tk.max_content(tokenizer))
            slots = torch.tensor([p + 1 for p in learn], device=device)  # +1: after the start token
            init = vocab[torch.randint(len(vocab), (len(learn),), generator=generator).to(device)]
            soft = embedding(init).detach().clone().requires_grad_(True)
            optimizer = torch.optim.AdamW([soft], lr=config.lr, weight_decay=config.weight_decay)
            base_ids = torch.tensor([tk.full_ids(tokenizer, content)], device=device)

            def adversarial_hidden(hard_ids: Any, hard_embeds: Any) -> Any:
                ids = base_ids.clone()
                ids[0, slots] = hard_ids
                embeds = embedding(ids).detach()
                embeds = embeds.index_put((torch.zeros_like(slots), slots), hard_embeds)
                return tk.encode_embeds(text_encoder, ids, embeds), ids

            def denoising_loss(encoded: Any, t: Any, noise: Any) -> Any:
                hidden, ids = encoded
                x_t = dm.add_noise(target_pipe, x0, noise, t)
                with torch.no_grad():
                    reference = dm.predict_noise(original_pipe, x_t, t, seed_hidden, ids=seed_ids)
                return torch.nn.functional.mse_loss(dm.predict_noise(target_pipe, x_t, t, hidden, ids=ids).float(), reference.float())

            eval_t = torch.randint(n_train, (config.eval_draws,), generator=generator).to(device)
            eval_noise = torch.randn((config.eval_draws, *x0.shape[1:]), generator=generator).to(device)
            best_loss, best_ids, history = float("inf"), None, []
            succeeded, steps_run = False, 0
            for step in range(config.budget.iterations):
                with torch.no_grad():
                    hard_ids = tk.nearest_tokens(soft.detach(), vocab_unit, vocab)
                hard_embeds = embedding(hard_ids).detach().requires_grad_(True)
                encoded = adversarial_hidden(hard_ids, hard_embeds)
                t = torch.randint(n_train, (1,), generator=generator).to(device)
                noise = torch.randn(x0.shape, generator=generator).to(device)
                loss = denoising_loss(encoded, t, noise)
                soft.grad = torch.autograd.grad(loss, [hard_embeds])[0]
                optimizer.step()
                optimizer.zero_grad()
                if step % config.eval_every == 0 or step == config.budget.iterations - 1:
                    with torch.no_grad():
                        encoded = adversarial_hidden(hard_ids, embedding(hard_ids))
                        held_out = sum(
                            denoising_loss(encoded, eval_t[i : i + 1], eval_noise[i : i + 1]).item() for i in range(config.eval_draws)
                        ) / config.eval_draws
                    history.append(held_out)
                    if held_out < best_loss:
                        best_loss, best_ids = held_out, hard_ids.clone()
                    if context.judge is not None and context.judge(tk.decode(tokenizer, _filled(content, learn, hard_ids)), seed):
                        best_loss, best_ids, succeeded = held_out, hard_ids.clone(), True
                steps_run = step + 1
                context.report(position * config.budget.iterations + step + 1, total, self.name)
                if succeeded:
                    context.report((position + 1) * config.budget.iterations, total, self.name)
                    break
            final = _filled(content, learn, best_ids)
            check = tk.roundtrip(tokenizer, final)
            meta = {
                "token_ids": final,
                "adversarial_positions": learn,
                "variant": self.variant,
                **check.as_meta(),
                "loss": best_loss,
                "loss_first_eval": history[0] if history else None,
                "iterations_run": steps_run,
                "judged_success": succeeded if context.judge is not None else None,
            }
            rows.append(context.seed_done(index, adversarial_row(seed, check.text, self.name, meta)))
        return AttackResult(rows, {"vocab_size": int(len(vocab)), "original_is_target": original_is_target})


def _filled(content: list[int], learn: list[int], ids: Any) -> list[int]:
    """The seed content with the learnable positions set to ``ids``."""
    final = list(content)
    for position, token in zip(learn, ids.tolist()):
        final[position] = int(token)
    return final


class P4DN(P4D):
    name = "p4d-n"
    variant = "n"


class P4DK(P4D):
    name = "p4d-k"
    variant = "k"
