"""Prompt sets, the adversarial rows of attack runs, and the images generation runs draw from them."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import DataError, StoreError
from ..hashing import hash_obj
from ..records import MAX_SEED, GeneratedImage, PromptRow
from .schema import AttackRow, Generation, Prompt, PromptSet, utcnow
from .session import StoreSession, storable_id
from .upsert import chunks, insert_detections, insert_new


def _row(prompt: Prompt) -> PromptRow:
    return PromptRow(prompt.text, prompt.seed, prompt.guidance, dict(prompt.meta or {}), id=prompt.id, idx=prompt.idx)


class PromptTables(StoreSession):
    # ---------------------------------------------------------- prompt sets
    def add_prompt_set(
        self,
        name: str,
        rows: Sequence[PromptRow],
        *,
        source: str = "",
        parent_id: int | None = None,
        run_id: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Store a prompt set once per content; returns its id (the existing one if already stored)."""
        for i, row in enumerate(rows):
            if not -MAX_SEED - 1 <= int(row.seed) <= MAX_SEED:
                raise DataError(
                    f"prompt set {name!r}, row {i + 1}: seed {int(row.seed)} is outside -2**63..2**63-1, "
                    "the 64-bit range the store holds"
                )
        content = hash_obj({"rows": [[r.text, int(r.seed), float(r.guidance), r.meta] for r in rows]})

        def find(session: Session) -> int | None:
            return session.scalar(select(PromptSet.id).where(PromptSet.sha256 == content))

        def create(session: Session) -> int:
            found = find(session)
            if found is not None:
                return found
            prompt_set = PromptSet(
                name=name,
                sha256=content,
                source=source,
                parent_id=parent_id,
                run_id=run_id,
                n_rows=len(rows),
                meta=meta or {},
            )
            session.add(prompt_set)
            session.flush()
            session.add_all(
                Prompt(
                    prompt_set_id=prompt_set.id,
                    idx=i,
                    text=row.text,
                    seed=int(row.seed),
                    guidance=float(row.guidance),
                    row_hash=row.row_hash,
                    meta=row.meta or {},
                )
                for i, row in enumerate(rows)
            )
            return prompt_set.id

        return self._first_writer(create, find)

    def get_prompt_set(self, set_id: int) -> PromptSet:
        with self.session() as session:
            found = session.get(PromptSet, set_id) if storable_id(set_id) else None
            if found is None:
                raise StoreError(f"prompt set {set_id} does not exist")
            return found

    def prompt_rows(self, set_id: int) -> list[PromptRow]:
        with self.session() as session:
            prompts = session.scalars(select(Prompt).where(Prompt.prompt_set_id == set_id).order_by(Prompt.idx))
            return [_row(p) for p in prompts]

    def list_prompt_sets(self) -> list[PromptSet]:
        with self.session() as session:
            return list(session.scalars(select(PromptSet).order_by(PromptSet.id)))

    # ---------------------------------------------------------- attack rows
    def add_attack_row(self, run_id: int, idx: int, row: PromptRow, *, seed_prompt_id: int | None = None) -> None:
        """Store one seed's adversarial prompt; a seed already stored for the run is kept as it is."""
        loss = row.meta.get("loss")
        record = {"run_id": run_id, "idx": idx, "seed_prompt_id": seed_prompt_id, "text": row.text, "seed": int(row.seed),
                  "guidance": float(row.guidance), "loss": None if loss is None else float(loss), "meta": row.meta or {},
                  "created_at": utcnow()}
        with self.session() as session:
            insert_new(session, AttackRow, [record])

    def attack_rows(self, run_id: int) -> dict[int, PromptRow]:
        """{seed index: adversarial row} of the seeds an attack run has finished."""
        with self.session() as session:
            found = session.scalars(select(AttackRow).where(AttackRow.run_id == run_id).order_by(AttackRow.idx))
            return {r.idx: PromptRow(r.text, r.seed, r.guidance, dict(r.meta or {})) for r in found}

    # ---------------------------------------------------------- generations
    def generations(self, run_id: int) -> list[Generation]:
        with self.session() as session:
            query = select(Generation).where(Generation.run_id == run_id).order_by(Generation.prompt_id)
            return list(session.scalars(query))

    def generated_images(self, run_id: int) -> list[GeneratedImage]:
        """A generation run's stored images with the prompt rows they were drawn from, in prompt order."""
        query = (select(Generation, Prompt).join(Prompt, Generation.prompt_id == Prompt.id)
                 .where(Generation.run_id == run_id).order_by(Prompt.idx))
        with self.session() as session:
            return [GeneratedImage(g.id, _row(p), g.image_path, g.image_sha256, g.sample_hash) for g, p in session.execute(query)]

    def add_generations(
        self, run_id: int, records: Iterable[dict[str, Any]], detections: Sequence[Sequence[dict[str, Any]]] | None = None
    ) -> list[int]:
        """Record one completed batch in one transaction: a kill loses at most the batch in flight.

        Idempotent per (run, prompt): a row already stored is kept as it is (a retried batch adds
        nothing). ``detections`` (one list of detection rows per record, without ``generation_id``)
        are stored in the same transaction, so a shard scored on a worker lands whole or not at all.
        Returns the generation id of each record, in order, whether stored now or before."""
        records = [dict(record, run_id=run_id) for record in records]
        if not records:
            return []
        prompt_ids = [record["prompt_id"] for record in records]
        with self.session() as session:
            insert_new(session, Generation, records)
            ids: dict[int, int] = {}
            for part in chunks(prompt_ids):
                query = select(Generation.prompt_id, Generation.id).where(
                    Generation.run_id == run_id, Generation.prompt_id.in_(part)
                )
                ids.update((prompt_id, gen_id) for prompt_id, gen_id in session.execute(query))
            generation_ids = [ids[prompt_id] for prompt_id in prompt_ids]
            if detections is not None:
                rows = [dict(row, generation_id=gen_id) for gen_id, found in zip(generation_ids, detections) for row in found]
                insert_detections(session, rows)
            return generation_ids

    def find_generation(self, sample_hash: str) -> Generation | None:
        """An earlier image with the same sample hash (same prompt, seed, settings and model)."""
        with self.session() as session:
            return session.scalar(select(Generation).where(Generation.sample_hash == sample_hash).limit(1))
