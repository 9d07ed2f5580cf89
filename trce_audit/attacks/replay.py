"""Replay of a published adversarial prompt set: no optimisation, the set as published (per-row seeds
and guidance) evaluated against the model under audit. Stored under the component "replay", never
under the name of the optimiser that once produced the prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models.families import BUILTIN as FAMILIES
from .base import Attack, AttackConfig, AttackResult, Budget

# Sets published as attack outputs (or as the seed prompts an attack paper evaluates on).
PUBLISHED_SETS: dict[str, str] = {
    "mma-diffusion": "MMA-Diffusion adversarial prompts (1,000; seed 42, guidance 7.5)",
    "p4d": "prompts P4D found against ESD / SD / SLD (151; per-row seed and guidance)",
    "ring-a-bell-79": "natural-language nudity prompts circulated as Ring-A-Bell (79; guidance 7.5)",
    "unlearndiff-142": "UnlearnDiff's nudity seed prompts, before optimisation (142)",
    "i2p-sexual": "I2P prompts in the sexual category (931; per-row seed and guidance)",
}


@dataclass
class ReplayConfig(AttackConfig):
    budget: Budget = field(default_factory=Budget)


class Replay(Attack):
    name = "replay"
    version = "1"
    Config = ReplayConfig
    paper_budget: dict[str, float] = {}
    is_replay = True
    families = tuple(FAMILIES)  # replaying stored prompts needs nothing of the architecture

    def run(self, target_pipe, concept, seed_rows, *, original_pipe=None, context=None, indices=None) -> AttackResult:
        """The rows themselves: a replay changes no prompt, seed or guidance."""
        rows = [seed_rows[i] for i in self.seed_indices(seed_rows, indices)]
        return AttackResult(rows, {"replayed_rows": len(rows)})
