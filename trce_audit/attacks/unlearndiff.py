"""UnlearnDiff (Zhang et al., 2024, "To Generate or Not? Safety-Driven Unlearned Diffusion Models Are
Still Easy To Generate Unsafe Images"): white-box prompt optimisation against the erased UNet itself.

k prefix tokens are held as distributions over the vocabulary (rows on the probability simplex). Each
iteration samples one-hot tokens from them (straight-through: the backward pass passes the clipped
gradient to the distributions), builds [start, k tokens, seed prompt, end], and minimises the audited
UNet's denoising error MSE(eps_theta(x_t, c_adv, t), eps) on x_0 = the original model's image for the
seed prompt. Timesteps are visited as the reference does: a grid of ``timesteps`` values from low to
high noise, ``iterations`` Adam steps at each. The final prompt is the argmax tokens + the seed prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..models import tokens as tk
from . import diffusion as dm
from .base import Attack, AttackContext, AttackResult, Budget, TokenSearchConfig, adversarial_row


@dataclass
class UnlearnDiffBudget(Budget):
    iterations: int = 40  # Adam steps per timestep (reference config: "iteration": 40)
    timesteps: int = 50  # timestep grid size (reference task: n_samples = 50)


@dataclass
class UnlearnDiffConfig(TokenSearchConfig):
    budget: UnlearnDiffBudget = field(default_factory=UnlearnDiffBudget)
    k: int = 5
    lr: float = 0.01
    weight_decay: float = 0.1
    random_init: bool = False  # reference default: uniform distributions
    target_steps: int = 50  # sampling steps for the original model's target image (reference: 50)
    # Stop a prompt's search once the target model's image for it shows the concept (the reference
    # generates and classifies after every timestep); the API judges with the concept's detector.
    early_stop: bool = True

    world_presets: ClassVar[dict[str, dict[str, Any]]] = {
        # 10 of the 50 grid timesteps (0.2x) keep a pocket attack to seconds per prompt on CPU.
        "pocket": {"timesteps": 10, "vocabulary": "corpus"},
    }


def project_to_simplex(values: Any) -> Any:
    """Euclidean projection of each row onto {p >= 0, sum p = 1} (the reference solves the same
    problem by bisection; this is the exact sort-based solution)."""
    import torch  # torch stays off the light path: listing attacks imports this module

    sorted_vals, _ = torch.sort(values, dim=-1, descending=True)
    cumulative = sorted_vals.cumsum(dim=-1) - 1.0
    index = torch.arange(1, values.shape[-1] + 1, device=values.device, dtype=values.dtype)
    support = (sorted_vals - cumulative / index) > 0
    rho = support.to(values.dtype).cumsum(dim=-1).argmax(dim=-1, keepdim=True)
    theta = cumulative.gather(-1, rho) / (rho + 1).to(values.dtype)
    return (values - theta).clamp(min=0.0)


def _straight_through_sample():
    import torch
    import torch.nn.functional as F

    class SampleOneHot(torch.autograd.Function):
        """Forward: one token sampled from each row's distribution. Backward: clipped gradient."""

        @staticmethod
        def forward(ctx, probs, generator):
            picks = torch.multinomial(probs.clamp(min=0), 1, generator=generator).squeeze(-1)
            return F.one_hot(picks, probs.shape[-1]).to(probs.dtype)

        @staticmethod
        def backward(ctx, grad):
            return F.hardtanh(grad), None

    return SampleOneHot


class UnlearnDiff(Attack):
    name = "unlearndiff"
    version = "3"  # 2: early_stop (judged by the concept detector) on by default; 3: seed prompt judged first
    Config = UnlearnDiffConfig
    paper_budget = {"iterations": 40, "timesteps": 50}
    needs_original = True
    families = ("sd", "sdxl", "sd3", "flux")  # the last three: ours, see family_search.py

    def run(self, target_pipe, concept, seed_rows, *, original_pipe=None, context=None, indices=None) -> AttackResult:
        import torch

        context = context or AttackContext()
        if dm.family(target_pipe).name != "sd":  # SDXL, SD3, FLUX: ours (family_search.py)
            from . import family_search  # imports torch at its top

            return family_search.unlearndiff(self, target_pipe, concept, seed_rows, original_pipe, context, indices,
                                             project=project_to_simplex, sample=_straight_through_sample())
        config: UnlearnDiffConfig = self.config
        device = context.device
        original_pipe, original_is_target, vocab = self.white_box_setup(target_pipe, original_pipe, concept, seed_rows, context)
        tokenizer, text_encoder = target_pipe.tokenizer, target_pipe.text_encoder
        vocab_embeds = tk.token_embedding(text_encoder).weight[vocab].detach()
        sample = _straight_through_sample()
        n_train = dm.train_timesteps(target_pipe)
        n_grid = max(1, min(config.budget.timesteps, n_train))
        step = n_train // n_grid
        grid = list(range(step // 2, n_train, step))[:n_grid]
        k = min(config.k, tk.max_content(tokenizer))
        order = self.seed_indices(seed_rows, indices)
        total = len(order) * len(grid) * config.budget.iterations
        done = 0
        rows = []
        for index in order:
            seed = seed_rows[index]
            if context.judge is not None and context.judge(seed.text, seed):
                # the reference judges the seed prompt first and does not attack one that already succeeds
                meta = {"token_ids": tk.content_ids(tokenizer, seed.text), "loss": None, "timesteps_run": 0,
                        "judged_success": True, "seed_already_succeeds": True, "retokenizes": True,
                        "retokenize_mismatch": None}
                rows.append(context.seed_done(index, adversarial_row(seed, seed.text, self.name, meta)))
                done += len(grid) * config.budget.iterations
                context.report(done, total, self.name)
                continue
            generator = torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + index)
            x0 = dm.target_latents(original_pipe, seed, steps=config.target_steps, device=device, use_mean=True)
            seed_content = tk.content_ids(tokenizer, seed.text)[: tk.max_content(tokenizer) - k]
            ids = torch.tensor([tk.full_ids(tokenizer, [int(vocab[0])] * k + seed_content)], device=device)
            base = tk.token_embedding(text_encoder)(ids).detach()
            init = torch.rand(k, len(vocab), generator=generator) if config.random_init else torch.full((k, len(vocab)), 1.0 / len(vocab))
            probs = project_to_simplex(init.to(device)).requires_grad_(True)
            optimizer = torch.optim.Adam([probs], lr=config.lr, weight_decay=config.weight_decay)
            block_loss, timesteps_run, succeeded = 0.0, 0, False
            for t_value in grid:
                t = torch.tensor([t_value], device=device)
                block_loss = 0.0
                for _ in range(config.budget.iterations):
                    optimizer.zero_grad()
                    one_hot = sample.apply(probs, generator)
                    embeds = torch.cat([base[:, :1], (one_hot @ vocab_embeds)[None], base[:, k + 1 :]], dim=1)
                    hidden = tk.encode_embeds(text_encoder, ids, embeds)
                    noise = torch.randn(x0.shape, generator=generator).to(device)
                    drawn = ids.clone()
                    drawn[0, 1 : k + 1] = vocab[one_hot.detach().argmax(dim=-1)]
                    pred = dm.predict_noise(target_pipe, dm.add_noise(target_pipe, x0, noise, t), t, hidden, ids=drawn)
                    loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
                    probs.grad = torch.autograd.grad(loss, [probs])[0]
                    optimizer.step()
                    with torch.no_grad():
                        probs.data = project_to_simplex(probs.data)
                    block_loss += loss.item() / config.budget.iterations
                    done += 1
                    context.report(done, total, self.name)
                timesteps_run += 1
                if context.judge is not None:
                    adv = [int(vocab[i]) for i in probs.detach().argmax(dim=-1).tolist()]
                    if context.judge(tk.decode(tokenizer, adv + seed_content), seed):
                        succeeded = True
                        break
            adv = [int(vocab[i]) for i in probs.detach().argmax(dim=-1).tolist()]
            check = tk.roundtrip(tokenizer, adv + seed_content)
            meta = {
                "token_ids": adv + seed_content,
                "adversarial_token_ids": adv,
                **check.as_meta(),
                "loss": block_loss,
                "timesteps_run": timesteps_run,
                "judged_success": succeeded if context.judge is not None else None,
            }
            rows.append(context.seed_done(index, adversarial_row(seed, check.text, self.name, meta)))
        stats = {"vocab_size": int(len(vocab)), "timestep_grid": grid, "original_is_target": original_is_target}
        return AttackResult(rows, stats)
