"""An attack's adversarial prompt set: stored from its per-seed rows in seed order, found again after an
interrupted attempt, and shared between targets whose text encoders a text-encoder-only search cannot
tell apart."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ..errors import TrceAuditError
from .attack_inputs import budget_meta
from .judging import query_summary

if TYPE_CHECKING:
    from ..store import Store
    from .attack_job import AttackJob


def stored_adversarial_set(store: "Store", run_id: int) -> int | None:
    """The prompt set an earlier, interrupted attempt of this run already optimised (hours of work)."""
    found = [s.id for s in store.list_prompt_sets() if s.run_id == run_id]
    return found[-1] if found else None


def store_adversarial_set(job: "AttackJob", seed_rows: list, finished: dict, stats: dict[str, Any], search_key: str | None) -> int:
    """The run's adversarial set from its stored per-seed rows, in seed order (the set one serial call makes)."""
    attack_obj = job.attack
    stored = job.store.attack_rows(job.run_id)
    if sorted(stored) != list(range(len(seed_rows))):
        raise TrceAuditError(f"{attack_obj.name} stored {len(stored)} of {len(seed_rows)} seed prompts")
    adversarial_rows = [stored[i] for i in range(len(seed_rows))]
    if "final_losses" in stats:  # per seed: the resumed call saw only the seeds it optimised
        stats["final_losses"] = [row.meta.get("loss") for row in adversarial_rows]
    stats["resumed_seeds"] = len(finished)
    stats["judge_queries"] = query_summary(adversarial_rows)
    return job.store.add_prompt_set(
        f"{attack_obj.name}@{job.model}",
        adversarial_rows,
        source=f"attack:{attack_obj.name}",
        parent_id=job.seed_set_id,
        run_id=job.run_id,
        meta={
            "attack": attack_obj.name,
            "version": attack_obj.version,
            "tier": attack_obj.tier,
            "config": attack_obj.config.as_dict(),
            "concept": job.concept.name,
            "target_model": job.model,
            "per_prompt_loss": [row.meta.get("loss") for row in adversarial_rows],
            "search_key": search_key,
            **budget_meta(attack_obj),
        },
    )


def text_encoder_search_key(job: "AttackJob", pipe: Any, seed_rows: list) -> str:
    """Everything a text-encoder-only search depends on: attack, version, config and budget, concept,
    seed rows, and the tokenizer's vocabulary and the text encoder's weights (hashed as tensors, so a
    re-saved copy of the same encoder matches)."""
    digest = hashlib.sha256()
    attack_obj = job.attack
    head = {
        "attack": attack_obj.name,
        "version": attack_obj.version,
        "config": attack_obj.config.identity_dict(),
        "concept": job.concept.as_dict(),
        "seeds": [row.row_hash for row in seed_rows],
        "vocab": sorted(pipe.tokenizer.get_vocab().items()),
    }
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for name, tensor in sorted(pipe.text_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def set_with_search_key(store: "Store", attack_name: str, key: str) -> int | None:
    """The latest adversarial set a search with this key stored, if any."""
    for prompt_set in reversed(store.list_prompt_sets()):
        if prompt_set.source == f"attack:{attack_name}" and (prompt_set.meta or {}).get("search_key") == key:
            return prompt_set.id
    return None
