"""One attack run once its inputs are resolved: the job record, the search (journalled per seed, shared
searches reused), the before/after evaluations (or a weights-tier attack's curve, api/attack_weights.py)
and the run summary. ``api.attack.attack`` resolves the inputs and starts the run."""

from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError, TrceAuditError
from ..models.determinism import deterministic, unrepeatable_ops

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..models.resolve import ModelRef
    from ..store import Store
    from ..workspace import Workspace


def _setting(settings: Any, key: str, default: Any) -> Any:
    if settings is None:
        return default
    if isinstance(settings, dict):
        return settings.get(key, default)
    return getattr(settings, key, default)


def _generation_settings(settings: Any) -> Any:
    """Settings for the evaluation engine: a dict (from the CLI) becomes its GenerationSettings."""
    if isinstance(settings, dict):
        if not settings:
            return None
        from ..generation import GenerationSettings

        return GenerationSettings(**settings)
    return settings


def _asr(result: dict[str, Any], scorer: str | None = None) -> float | None:
    """The ASR ``scorer`` gave (exactly, else one of its presets ``runner:preset``), else the first."""
    rates = [(metric.get("scorer") or "", metric.get("value")) for metric in result.get("metrics", []) if metric.get("name") == "asr"]
    if scorer is None:
        return rates[0][1] if rates else None
    for matches in (lambda named: named == scorer, lambda named: named.startswith(f"{scorer}:")):
        for named, value in rates:
            if matches(named):
                return value
    return None


def _asr_by_scorer(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """{scorer: {"before": ASR, "after": ASR}} for every scorer (and the judge) the evals stored."""
    table: dict[str, dict[str, float | None]] = {}
    for when, result in (("before", before), ("after", after)):
        for metric in (result or {}).get("metrics", []):
            if metric.get("name") == "asr":
                table.setdefault(metric.get("scorer") or "", {"before": None, "after": None})[when] = metric.get("value")
    return table



@dataclass
class _AttackJob:
    """Everything one attack run needs once its inputs are resolved and its run is started."""

    store: "Store"
    workspace: "Workspace"
    attack: Any
    run_id: int
    model: str
    target: "ModelRef"
    original: "ModelRef | None"
    concept: "Concept"
    seed_set_id: int
    limit: int | None
    scorers: list[str]
    eval_metrics: list[str]  # the scorers, then the judge's metric when it is not one of them
    judge: "str | Callable[[str, Any], bool] | None"
    judge_info: dict[str, Any] | None
    as_published: bool
    settings: Any
    allow_pickle: bool
    device: str
    progress: Callable[[int, int, str], None] | None
    executor: Any = None

    def seed_rows(self) -> list:
        rows = self.store.prompt_rows(self.seed_set_id)
        rows = rows[: self.limit] if self.limit is not None else rows
        if not rows:
            raise ConfigError(f"prompt set {self.seed_set_id} has no prompts to attack")
        return rows

    def measure(self, set_id: int, limit: int | None, model: str | None = None) -> dict[str, Any]:
        """ASR (and any other requested metric) of a prompt set on the target (or on ``model``, a
        weights-tier attack's checkpoint), as a child eval run."""
        evaluate = importlib.import_module("trce_audit.api.evaluate").evaluate
        return evaluate(
            self.store, self.workspace, model=model or self.model, prompts=set_id, metrics=self.eval_metrics,
            settings=_generation_settings(self.settings), limit=limit, concept=self.concept.name,
            parent_run_id=self.run_id, allow_pickle=self.allow_pickle,
            **({"executor": self.executor} if self.executor is not None else {}),
        )

    def summary(self, n_prompts: int) -> dict[str, Any]:
        return {
            "concept": self.concept.name,
            "seed_set_id": self.seed_set_id,
            "target_model": {"spec": self.model, "fingerprint": self.target.fingerprint},
            "original_model": {"spec": self.original.spec, "fingerprint": self.original.fingerprint} if self.original else None,
            "n_prompts": n_prompts,
            "judge": self.judge_info,
            "scorers": self.scorers,
            "eval_metrics": self.eval_metrics,
            "as_published": self.as_published,
        }

    def scores(self, before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
        """Headline ASR (first scorer), ASR under every scorer and the judge, and judge-only successes."""
        from .judging import judge_only_successes

        judge_id = self.judge if isinstance(self.judge, str) else None
        judge_only = None
        if judge_id and self.scorers[0] != judge_id:
            judge_only = judge_only_successes(self.store, self.workspace, self.concept, after.get("generation_run_id"), judge_id, self.scorers[0])
        return {
            "asr_before": _asr(before, self.scorers[0]) if before is not None else None,
            "asr_after": _asr(after, self.scorers[0]),
            "asr_by_scorer": _asr_by_scorer(before, after),
            "judge_only": judge_only,
            "judge_only_count": None if judge_only is None else len(judge_only),
        }


def _replay(job: _AttackJob) -> dict[str, Any]:
    from ..attacks.replay import PUBLISHED_SETS

    summary = job.summary(len(job.seed_rows()))
    after = job.measure(job.seed_set_id, job.limit)
    name = job.store.get_prompt_set(job.seed_set_id).name
    summary.update(
        replay=True,
        published_set=name if name in PUBLISHED_SETS else None,
        adversarial_set_id=job.seed_set_id,
        eval_run_before=None,
        eval_run_after=after.get("run_id"),
        metrics_after=after.get("metrics", []),
        judge_queries=None,
        **job.scores(None, after),
    )
    return summary


def _stored_adversarial_set(store: "Store", run_id: int) -> int | None:
    """The prompt set an earlier, interrupted attempt of this run already optimised (hours of work)."""
    found = [s.id for s in store.list_prompt_sets() if s.run_id == run_id]
    return found[-1] if found else None


def _optimise_and_measure(job: _AttackJob) -> dict[str, Any]:
    from ..attacks.base import AttackContext
    from .attack_seeds import distributable, optimise_on_executor
    from .judging import CountingJudge, query_summary, record_queries

    seed_rows = job.seed_rows()
    attack_obj = job.attack
    adversarial_set_id = _stored_adversarial_set(job.store, job.run_id)
    stats: dict[str, Any] = {"reused_adversarial_set": adversarial_set_id is not None}
    if adversarial_set_id is not None:  # keep what the search that made them recorded (a re-measure)
        prior = (job.store.get_run(job.run_id).summary or {}).get("stats") or {}
        stats.update({k: v for k, v in prior.items() if not k.startswith("reused")})
    search_key = None
    target_pipe = None
    finished = job.store.attack_rows(job.run_id)  # seeds an interrupted attempt already optimised
    missing = [i for i in range(len(seed_rows)) if i not in finished]
    # on the executor when there is a seed to optimise; else here (the run-level stats come from a call)
    remote = distributable(attack_obj, job.executor) and bool(missing)
    if adversarial_set_id is None:
        from ..models.resolve import load_pipeline

        if attack_obj.text_encoder_only or not remote:
            target_pipe = load_pipeline(job.target, device=job.device, allow_pickle=job.allow_pickle)
        if attack_obj.text_encoder_only:
            search_key = _text_encoder_search_key(job, target_pipe, seed_rows)
            adversarial_set_id = _set_with_search_key(job.store, attack_obj.name, search_key)
            if adversarial_set_id is not None:
                searched_by = job.store.get_run(job.store.get_prompt_set(adversarial_set_id).run_id)
                stats.update({k: v for k, v in ((searched_by.summary or {}).get("stats") or {}).items() if not k.startswith("reused")})
                stats["reused_search_of_run"] = searched_by.id
    if adversarial_set_id is None and remote:
        def store_row(index: int, row: Any, queries: int) -> None:
            row.meta["judge_queries"] = queries
            job.store.add_attack_row(job.run_id, index, row, seed_prompt_id=seed_rows[index].id)

        corpus = _corpus(attack_obj, job.concept, job.workspace)
        stats.update(optimise_on_executor(job, seed_rows, missing, corpus, store_row))
        adversarial_set_id = _store_adversarial_set(job, seed_rows, finished, stats, search_key)
    if adversarial_set_id is None:
        original_pipe = load_pipeline(job.original, device=job.device, allow_pickle=job.allow_pickle) if job.original else None
        with tempfile.TemporaryDirectory(prefix="trce-audit-judge-") as scratch:
            counter = None
            if job.judge is not None:
                judge = job.judge if callable(job.judge) else _detector_judge(job, target_pipe, Path(scratch))
                counter = CountingJudge(judge, seed_rows)

            def store_seed(index: int, row: Any) -> None:
                record_queries([row], [seed_rows[index]], _SeedQueries(counter, index))
                job.store.add_attack_row(job.run_id, index, row, seed_prompt_id=seed_rows[index].id)

            context = AttackContext(device=job.device, progress=job.progress, judge=counter,
                                    corpus=_corpus(attack_obj, job.concept, job.workspace), on_seed=store_seed,
                                    finished=finished, model_dir=Path(job.target.path),
                                    artefact_dir=job.workspace.artefacts_dir / _ARTEFACT_FOLDERS.get(attack_obj.tier, "embeddings"),
                                    benign_rows=_benign_rows(job))
            # run even when no seed is missing: the search's run-level stats come from this call
            with deterministic() as determinism:
                result = attack_obj.run(target_pipe, job.concept, seed_rows, original_pipe=original_pipe, context=context, indices=missing)
        del original_pipe
        stats.update(result.stats, **unrepeatable_ops(determinism))
        adversarial_set_id = _store_adversarial_set(job, seed_rows, finished, stats, search_key)
    del target_pipe
    rows = job.store.prompt_rows(adversarial_set_id)
    losses = [row.meta["loss"] for row in rows if row.meta.get("loss") is not None]  # None: nothing was optimised
    before = job.measure(job.seed_set_id, job.limit)
    curve = None
    if attack_obj.tier == "weights":  # the seed prompts themselves, on each saved checkpoint
        from .attack_weights import measure_curve

        curve, after = measure_curve(job, rows, before)
    else:
        after = job.measure(adversarial_set_id, None)
    summary = job.summary(len(seed_rows))
    summary.update(
        replay=False,
        adversarial_set_id=adversarial_set_id,
        **job.scores(before, after),
        judge_queries=query_summary(rows),
        eval_run_before=before.get("run_id"),
        eval_run_after=after.get("run_id"),
        metrics_before=before.get("metrics", []),
        metrics_after=after.get("metrics", []),
        mean_loss=(sum(losses) / len(losses)) if losses else None,
        retokenize_failures=sum(1 for row in rows if row.meta.get("retokenizes") is False),
        stats=stats,
        **({"curve": curve} if curve is not None else {}),
    )
    return summary


def _store_adversarial_set(job: _AttackJob, seed_rows: list, finished: dict, stats: dict[str, Any], search_key: str | None) -> int:
    """The run's adversarial set from its stored per-seed rows, in seed order (the set one serial call makes)."""
    from .judging import query_summary

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
            **_budget_meta(attack_obj),
        },
    )


class _SeedQueries:
    """One seed's judge query count, shaped as record_queries reads a CountingJudge."""

    def __init__(self, counter: Any, index: int):
        self.per_seed = [counter.per_seed[index] if counter is not None else 0]


def _text_encoder_search_key(job: _AttackJob, pipe: Any, seed_rows: list) -> str:
    """Everything a text-encoder-only search depends on: attack, version, config and budget, concept,
    seed rows, and the tokenizer's vocabulary and the text encoder's weights (hashed as tensors, so a
    re-saved copy of the same encoder matches)."""
    import hashlib
    import json

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


def _set_with_search_key(store: "Store", attack_name: str, key: str) -> int | None:
    for prompt_set in reversed(store.list_prompt_sets()):
        if prompt_set.source == f"attack:{attack_name}" and (prompt_set.meta or {}).get("search_key") == key:
            return prompt_set.id
    return None


def _detector_judge(job: _AttackJob, pipe: Any, scratch: Path) -> Callable[[str, Any], bool]:
    from ..generation import GenerationSettings
    from .judging import detector_judge

    settings = _generation_settings(job.settings) or GenerationSettings()
    return detector_judge(job.judge, workspace=job.workspace, concept=job.concept, pipe=pipe, settings=settings,
                          model_path=Path(job.target.path), scratch=scratch)


def _corpus(attack_obj, concept: "Concept", workspace: "Workspace") -> list[str]:
    """Texts whose tokens make up a vocabulary="corpus" search: the concept's evaluation and preserve
    sets (the seed prompts and the concept's pairs are added by the attack itself)."""
    if getattr(attack_obj.config, "vocabulary", "all") != "corpus":
        return []
    from .. import data

    return [row.text for name in (*concept.eval_sets, *concept.preserve_sets) for row in data.load_prompt_set(name, workspace=workspace)]


# Where an attack's files go under the workspace's artefacts: learned embeddings, fine-tuned checkpoints.
_ARTEFACT_FOLDERS = {"embedding": "embeddings", "weights": "finetuned"}


def _benign_rows(job: _AttackJob) -> Callable[[str], list]:
    """A caption set's rows without those that request the attacked concept (fine-tuning's benign data)."""

    def rows(name: str) -> list:
        from .. import data
        from .erasing import shows_concept

        return [row for row in data.load_prompt_set(name, workspace=job.workspace) if not shows_concept(row, job.concept.name)]

    return rows


def _budget_meta(attack_obj) -> dict[str, Any]:
    from ..attacks.base import below_paper_budget, budget_ratios

    ratios = budget_ratios(attack_obj.config.budget, attack_obj.paper_budget)
    return {"budget_ratios": ratios, "below_paper_budget": below_paper_budget(ratios)}
