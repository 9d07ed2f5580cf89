"""Ring-A-Bell (Tsai et al., ICLR 2024): a model-agnostic attack that needs only the text encoder.

1. Concept vector c = mean over the concept's (with, without) prompt pairs of E(with) - E(without),
   E = the text encoder's full sequence output (77 x d), as the reference notebook computes it.
2. For each seed prompt P the target is E(P) + eta * c.
3. A genetic algorithm searches K token ids whose encoding [start, K ids, end, end ...] is closest to
   the target (squared error), the whole population encoded in one batched call per generation.
The adversarial prompt is the decoded K tokens alone (the seed prompt only shapes the target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from ..models import tokens as tk
from .base import Attack, AttackContext, AttackResult, Budget, TokenSearchConfig, adversarial_row


@dataclass
class RingABellBudget(Budget):
    population: int = 200
    generations: int = 3000


@dataclass
class RingABellConfig(TokenSearchConfig):
    budget: RingABellBudget = field(default_factory=RingABellBudget)
    length: int = 16  # K: number of free tokens (the paper's K=16; K=77 means 75 free tokens)
    eta: float = 3.0  # weight of the concept vector (reference notebook: cof = 3 for nudity)
    mutation_rate: float = 0.25
    crossover_rate: float = 0.5
    fitness: str = "mse"  # "mse" (the reference's squared error, averaged) or "cosine"
    encode_batch: int = 256  # population members per text-encoder call (memory only; not in results)

    world_presets: ClassVar[dict[str, dict[str, Any]]] = {
        # Pocket-world text encoders are small; 500 generations stay above one tenth of the paper's 3000.
        # Their concept vector is as long as a prompt's own encoding (mean square 1.6 against 2.1 per
        # element, benchmarks/ring_a_bell_scale.py), so eta 3 puts the target far from any prompt; eta 1
        # moves it by about one prompt.
        "pocket": {"generations": 500, "vocabulary": "corpus", "eta": 1.0},
    }
    runtime_fields: ClassVar[tuple[str, ...]] = ("encode_batch",)


def concept_vector(text_encoder: Any, tokenizer: Any, pairs: list[tuple[str, str]], device: str) -> Any:
    """Mean difference of full-sequence hidden states over (with-concept, without-concept) prompts."""
    import torch  # torch stays off the light path: listing attacks imports this module

    with_concept = [tk.full_ids(tokenizer, tk.content_ids(tokenizer, a)) for a, _ in pairs]
    without = [tk.full_ids(tokenizer, tk.content_ids(tokenizer, b)) for _, b in pairs]
    with torch.no_grad():
        first = tk.encode_ids(text_encoder, torch.tensor(with_concept, device=device))
        second = tk.encode_ids(text_encoder, torch.tensor(without, device=device))
    return (first - second).mean(dim=0)


def genetic_search(
    fitness: Callable[[Any], Any],
    vocab: Any,
    *,
    length: int,
    population: int,
    generations: int,
    mutation_rate: float,
    crossover_rate: float,
    generator: Any,
    on_generation: Callable[[int, float], None] | None = None,
) -> tuple[Any, float, list[float]]:
    """Minimise ``fitness`` (a loss per row of a (n, length) id tensor) over sequences of ``vocab`` ids.

    Each generation: score, keep the better half, cross each survivor with a random partner at one
    point with probability ``crossover_rate`` (both children join), then mutate one random position of
    a member with probability ``mutation_rate``. Unlike the reference (which mutates survivors in place,
    the best included), the best member is never mutated, so the best loss never gets worse.
    Returns (best ids, best loss, best loss per generation).
    """
    import torch

    def draw(shape: tuple[int, ...]) -> Any:
        return vocab[torch.randint(len(vocab), shape, generator=generator, device="cpu").to(vocab.device)]

    members = draw((population, length))
    # Fitness is deterministic, so a member that survives unchanged keeps its score: only children and
    # mutated members are scored again (the reference re-scores the whole population every generation).
    losses = torch.full((population,), float("nan"))
    history: list[float] = []
    best_ids, best_loss = members[0], float("inf")
    for step in range(generations):
        stale = torch.isnan(losses)
        if bool(stale.any()):
            losses[stale] = fitness(members[stale.to(members.device)]).float()
        order = torch.argsort(losses)
        members, losses = members[order][: max(population // 2, 1)], losses[order][: max(population // 2, 1)]
        if float(losses[0]) <= best_loss:
            best_loss, best_ids = float(losses[0]), members[0].clone()
        history.append(best_loss)
        if on_generation is not None:
            on_generation(step, best_loss)
        if step == generations - 1:
            break
        n = members.shape[0]
        rand = torch.rand(n, generator=generator)
        partners = torch.randint(n, (n,), generator=generator)
        points = torch.randint(1, length + 1, (n,), generator=generator)
        children = []
        for i in torch.nonzero(rand < crossover_rate).flatten().tolist():
            cut, j = int(points[i]), int(partners[i])
            children.append(torch.cat([members[i, :cut], members[j, cut:]]))
            children.append(torch.cat([members[j, :cut], members[i, cut:]]))
        if children:
            members = torch.cat([members, torch.stack(children)])
            losses = torch.cat([losses, torch.full((len(children),), float("nan"))])
        mutate = torch.rand(members.shape[0], generator=generator) < mutation_rate
        mutate[0] = False  # elitism: the best survivor (row 0 after sorting) is kept as is
        rows = torch.nonzero(mutate).flatten()
        if len(rows):
            cols = torch.randint(length, (len(rows),), generator=generator).to(members.device)
            members[rows.to(members.device), cols] = draw((len(rows),))
            losses[rows] = float("nan")
    return best_ids, best_loss, history


class RingABell(Attack):
    name = "ring-a-bell"
    version = "1"
    Config = RingABellConfig
    paper_budget = {"population": 200, "generations": 3000}
    text_encoder_only = True

    def run(self, target_pipe, concept, seed_rows, *, original_pipe=None, context=None, indices=None) -> AttackResult:
        import torch

        context = context or AttackContext()
        config: RingABellConfig = self.config
        tokenizer, text_encoder = target_pipe.tokenizer, target_pipe.text_encoder
        device = context.device
        text_encoder.to(device).requires_grad_(False)
        length = min(config.length, tk.max_content(tokenizer))
        vector = concept_vector(text_encoder, tokenizer, list(concept.pairs), device)
        vocab = torch.tensor(self.search_vocabulary(target_pipe, concept, seed_rows, context), device=device)
        template = torch.tensor(tk.full_ids(tokenizer, [0] * length), device=device)
        rows, losses = [], []
        order = self.seed_indices(seed_rows, indices)
        for position, index in enumerate(order):
            seed = seed_rows[index]
            seed_ids = torch.tensor([tk.full_ids(tokenizer, tk.content_ids(tokenizer, seed.text))], device=device)
            with torch.no_grad():
                target = tk.encode_ids(text_encoder, seed_ids)[0] + config.eta * vector

            def fitness(members: Any) -> Any:
                full = template.repeat(members.shape[0], 1)
                full[:, 1 : length + 1] = members
                out = []
                with torch.no_grad():
                    for start in range(0, full.shape[0], config.encode_batch):
                        hidden = tk.encode_ids(text_encoder, full[start : start + config.encode_batch])
                        if config.fitness == "cosine":
                            sim = torch.nn.functional.cosine_similarity(hidden.flatten(1), target.flatten()[None], dim=1)
                            out.append(1.0 - sim)
                        else:
                            out.append(((hidden - target) ** 2).mean(dim=(1, 2)))
                return torch.cat(out).float().cpu()

            generator = torch.Generator().manual_seed(config.seed * 100_003 + index)
            total = len(order) * config.budget.generations
            best_ids, best_loss, history = genetic_search(
                fitness,
                vocab,
                length=length,
                population=config.budget.population,
                generations=config.budget.generations,
                mutation_rate=config.mutation_rate,
                crossover_rate=config.crossover_rate,
                generator=generator,
                on_generation=lambda step, _loss: context.report(position * config.budget.generations + step + 1, total, self.name),
            )
            ids = [int(i) for i in best_ids.tolist()]
            check = tk.roundtrip(tokenizer, ids)
            meta = {"token_ids": ids, **check.as_meta(), "loss": best_loss, "loss_first_generation": history[0]}
            rows.append(context.seed_done(index, adversarial_row(seed, check.text, self.name, meta)))
            losses.append(best_loss)
        return AttackResult(rows, {"concept_vector_norm": float(vector.norm()), "vocab_size": int(len(vocab)), "final_losses": losses})
