"""Scoring a weights-tier attack (fine-tuning resurgence). Its rows keep the seed prompts and name the
checkpoints it saved; each checkpoint becomes a stored artefact of kind ``attack-model`` (never taken
for an erased model by ``attack``/``eval`` defaults) and the seed prompts are measured on it, which gives
ASR against fine-tuning steps. The last checkpoint's measurement is the attack's "after"."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..attacks.finetune import META_KEY
from ..errors import DataError
from ..hashing import hash_tree
from .asr import asr, scored_n

if TYPE_CHECKING:
    from .attack_job import AttackJob

MODEL_KIND = "attack-model"


def checkpoint_models(job: "AttackJob", rows: list) -> list[tuple[int, str]]:
    """(steps, model spec) of every checkpoint the rows name, each recorded once as an artefact after
    its files are checked against the sha256 the attack recorded."""
    entry = (rows[0].meta or {}).get(META_KEY) if rows else None
    if not isinstance(entry, dict) or not entry.get("checkpoints"):
        raise DataError(f"{job.attack.name}: the adversarial rows name no checkpoint to score")
    found = []
    for point in entry["checkpoints"]:
        path = Path(point["path"])
        if not (path / "model_index.json").is_file() or hash_tree(path) != point["sha256"]:
            raise DataError(f"checkpoint {path} (sha256 {point['sha256'][:12]}) is missing or changed; rerun the attack in a fresh workspace")
        artefact_id = job.store.add_artefact(
            path=str(path), sha256=point["sha256"], run_id=job.run_id, parent_model=job.model,
            parent_fingerprint=job.target.fingerprint, kind=MODEL_KIND,
            meta={"attack": job.attack.name, "steps": int(point["steps"]), "attacked_concept": job.concept.name,
                  "world": job.target.world, "description": f"{job.model} after {point['steps']} steps of {job.attack.name}"},
        )
        found.append((int(point["steps"]), f"artefact:{artefact_id}"))
    return found


def measure_curve(job: "AttackJob", rows: list, before: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the curve: one point per checkpoint after step 0, the last checkpoint's measurement)."""

    def point(steps: int, model: str, result: dict[str, Any]) -> dict[str, Any]:
        by_scorer = {metric: asr(result, metric) for metric in job.eval_metrics}
        return {"steps": steps, "model": model, "asr": asr(result, job.scorers[0]), "asr_by_scorer": by_scorer,
                "eval_run": result.get("run_id"), "n": scored_n(result)}

    curve = [point(0, job.model, before)]
    after = before
    for steps, model in checkpoint_models(job, rows):
        after = job.measure(job.seed_set_id, job.limit, model=model)
        curve.append(point(steps, model, after))
    return curve, after
