"""The Store: typed operations on the result store. Components and the api call these, never raw SQL."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import DataError, StoreError
from ..hashing import hash_obj
from . import engine as engine_mod
from .schema import MAX_SEED, Artefact, AttackRow, Detection, Generation, Metric, Prompt, PromptSet, Run, utcnow
from .upsert import chunks, insert_new

T = TypeVar("T")

# Versions that can change a number; recorded with every run (read from metadata: no imports).
TRACKED_PACKAGES = ("trce-audit", "torch", "diffusers", "transformers", "nudenet", "onnxruntime", "clean-fid")


def package_versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def run_identity(
    kind: str,
    component: str,
    config: dict[str, Any],
    *,
    component_version: str = "",
    model_fingerprint: str | None = None,
    prompt_set_sha: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> str:
    """Hash that names a run. ``config`` must already exclude runtime-only options."""
    return hash_obj(
        {
            "kind": kind,
            "component": component,
            "component_version": component_version,
            "config": config,
            "model": model_fingerprint,
            "prompts": prompt_set_sha,
            "inputs": inputs or {},
        }
    )


def prompt_row_hash(text: str, seed: int, guidance: float) -> str:
    return hash_obj({"text": text, "seed": int(seed), "guidance": float(guidance)})


@dataclass
class PromptRow:
    """A prompt as components see it: plain values, detached from any session."""

    text: str
    seed: int
    guidance: float = 7.5
    meta: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    idx: int | None = None

    @property
    def row_hash(self) -> str:
        return prompt_row_hash(self.text, self.seed, self.guidance)


@dataclass
class RunHandle:
    id: int
    identity: str
    status: str
    resumed: bool


class Store:
    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        self.engine = engine_mod.make_engine(url)
        engine_mod.check_connection(self.engine)
        if migrate:
            engine_mod.upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        """The URL with any password masked: the only form to print, log or store."""
        return engine_mod.mask_url(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()

    def _first_writer(self, create: Callable[[Session], T], find: Callable[[Session], T | None]) -> T:
        """``create`` in one transaction; when another writer stored the same key in between (its unique
        constraint fires), the row it stored, found by ``find``."""
        try:
            with self.session() as session:
                return create(session)
        except IntegrityError:
            with self.session() as session:
                found = find(session)
            if found is None:  # not a lost race: another constraint failed
                raise
            return found

    # ----------------------------------------------------------------- runs
    def start_run(
        self,
        *,
        kind: str,
        component: str,
        config: dict[str, Any],
        runtime: dict[str, Any] | None = None,
        component_version: str = "",
        model_ref: str | None = None,
        model_fingerprint: str | None = None,
        prompt_set_id: int | None = None,
        parent_run_id: int | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> RunHandle:
        """Start a run, or resume the one with the same identity (a failed one is restarted)."""
        prompt_sha = None
        if prompt_set_id is not None:
            prompt_sha = self.get_prompt_set(prompt_set_id).sha256
        identity = run_identity(
            kind,
            component,
            config,
            component_version=component_version,
            model_fingerprint=model_fingerprint,
            prompt_set_sha=prompt_sha,
            inputs=inputs,
        )

        def resume(session: Session) -> RunHandle | None:
            existing = session.scalar(select(Run).where(Run.identity == identity))
            if existing is None:
                return None
            if existing.status == "failed":
                existing.status = "started"
                existing.error = None
            existing.runtime = runtime or {}
            return RunHandle(existing.id, identity, existing.status, resumed=True)

        def create(session: Session) -> RunHandle:
            found = resume(session)
            if found is not None:
                return found
            run = Run(
                identity=identity,
                kind=kind,
                component=component,
                component_version=component_version,
                config=config,
                runtime=runtime or {},
                model_ref=model_ref,
                model_fingerprint=model_fingerprint,
                prompt_set_id=prompt_set_id,
                parent_run_id=parent_run_id,
                versions=package_versions(),
                status="started",
                summary={},
            )
            session.add(run)
            session.flush()
            return RunHandle(run.id, identity, run.status, resumed=False)

        return self._first_writer(create, resume)

    def complete_run(self, run_id: int, summary: dict[str, Any] | None = None, runtime: dict[str, Any] | None = None) -> None:
        """Mark a run complete; ``runtime`` adds what was learnt only where the work ran (a worker's threads)."""
        with self.session() as session:
            run = self._run(session, run_id)
            run.status = "complete"
            run.finished_at = utcnow()
            if summary is not None:
                run.summary = {**(run.summary or {}), **summary}
            if runtime:
                run.runtime = {**(run.runtime or {}), **runtime}

    def update_summary(self, run_id: int, summary: dict[str, Any]) -> None:
        """Record progress of a run still in flight (its status is left alone)."""
        with self.session() as session:
            run = self._run(session, run_id)
            run.summary = {**(run.summary or {}), **summary}

    def fail_run(self, run_id: int, error: str) -> None:
        with self.session() as session:
            run = self._run(session, run_id)
            run.status = "failed"
            run.error = error
            run.finished_at = utcnow()

    def _run(self, session: Session, run_id: int) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise StoreError(f"run {run_id} does not exist")
        return run

    def get_run(self, run_id: int) -> Run:
        with self.session() as session:
            return self._run(session, run_id)

    def find_run(self, identity: str) -> Run | None:
        with self.session() as session:
            return session.scalar(select(Run).where(Run.identity == identity))

    def list_runs(
        self, kind: str | None = None, status: str | None = None, parent_run_id: int | None = None, limit: int = 100
    ) -> list[Run]:
        query = select(Run).order_by(Run.id.desc()).limit(limit)
        if kind:
            query = query.where(Run.kind == kind)
        if status:
            query = query.where(Run.status == status)
        if parent_run_id is not None:
            query = query.where(Run.parent_run_id == parent_run_id)
        with self.session() as session:
            return list(session.scalars(query))

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
            found = session.get(PromptSet, set_id)
            if found is None:
                raise StoreError(f"prompt set {set_id} does not exist")
            return found

    def prompt_rows(self, set_id: int) -> list[PromptRow]:
        with self.session() as session:
            prompts = session.scalars(select(Prompt).where(Prompt.prompt_set_id == set_id).order_by(Prompt.idx))
            return [PromptRow(p.text, p.seed, p.guidance, dict(p.meta or {}), id=p.id, idx=p.idx) for p in prompts]

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
                _insert_detections(session, rows)
            return generation_ids

    def find_generation(self, sample_hash: str) -> Generation | None:
        """An earlier image with the same sample hash (same prompt, seed, settings and model)."""
        with self.session() as session:
            return session.scalar(select(Generation).where(Generation.sample_hash == sample_hash).limit(1))

    # ----------------------------------------------------------- detections
    def add_detections(self, records: Iterable[dict[str, Any]]) -> list[int]:
        """Store detections; one call carries all of an image's rows for a detector (version, weights).

        Rows are numbered per image and detector in the order given (``ordinal``), and an image whose
        rows for that detector are already stored is skipped whole: scoring it again (a retry, a second
        writer) adds nothing. Returns the ids of the rows stored now."""
        with self.session() as session:
            return _insert_detections(session, records)

    def detections(self, run_id: int) -> list[Detection]:
        with self.session() as session:
            return list(session.scalars(select(Detection).where(Detection.run_id == run_id).order_by(Detection.id)))

    def detected_generation_ids(self, run_id: int, detector: str) -> set[int]:
        with self.session() as session:
            query = select(Detection.generation_id).where(Detection.run_id == run_id, Detection.detector == detector)
            return set(session.scalars(query))

    # -------------------------------------------------------------- metrics
    def add_metric(
        self,
        run_id: int,
        name: str,
        value: float,
        *,
        scorer: str = "",
        n: int = 0,
        ci_low: float | None = None,
        ci_high: float | None = None,
        protocol: dict[str, Any] | None = None,
    ) -> int:
        """Attach a number to a run, once per (run, name, scorer): a retried scorer keeps the first row.
        Returns the id of the row under that key (stored now or before)."""
        record = dict(
            run_id=run_id, name=name, scorer=scorer, value=float(value), n=n, ci_low=ci_low, ci_high=ci_high,
            protocol=protocol or {},
        )
        with self.session() as session:
            insert_new(session, Metric, [record])
            query = select(Metric.id).where(Metric.run_id == run_id, Metric.name == name, Metric.scorer == scorer)
            return session.scalar(query)

    def metrics(self, run_id: int) -> list[Metric]:
        with self.session() as session:
            return list(session.scalars(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)))

    # ------------------------------------------------------------ artefacts
    def add_artefact(
        self,
        *,
        path: str,
        sha256: str,
        run_id: int | None,
        parent_model: str | None = None,
        parent_fingerprint: str | None = None,
        kind: str = "model",
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Record a model folder once per (sha256, path); returns its id (the existing one if stored)."""

        def find(session: Session) -> int | None:
            return session.scalar(select(Artefact.id).where(Artefact.sha256 == sha256, Artefact.path == path))

        def create(session: Session) -> int:
            found = find(session)
            if found is not None:
                return found
            artefact = Artefact(
                kind=kind,
                path=path,
                sha256=sha256,
                run_id=run_id,
                parent_model=parent_model,
                parent_fingerprint=parent_fingerprint,
                meta=meta or {},
            )
            session.add(artefact)
            session.flush()
            return artefact.id

        return self._first_writer(create, find)

    def get_artefact(self, artefact_id: int) -> Artefact:
        with self.session() as session:
            found = session.get(Artefact, artefact_id)
            if found is None:
                raise StoreError(f"artefact {artefact_id} does not exist")
            return found

    def list_artefacts(self) -> list[Artefact]:
        with self.session() as session:
            return list(session.scalars(select(Artefact).order_by(Artefact.id)))

    def counts(self) -> dict[str, int]:
        """Row counts per table: used by tests to prove a failed command left the store unchanged."""
        with self.session() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (Run, Artefact, PromptSet, Prompt, Generation, Detection, Metric, AttackRow)
            }


def _insert_detections(session: Session, records: Iterable[dict[str, Any]]) -> list[int]:
    """``Store.add_detections`` inside a caller's transaction."""
    keyed: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        key = (record["generation_id"], record["detector"], record.get("detector_version", ""), record.get("weights_sha256", ""))
        group = keyed.setdefault(key, [])
        group.append({"detector_version": key[2], "weights_sha256": key[3], "ordinal": len(group), **record})
    if not keyed:
        return []
    columns = (Detection.generation_id, Detection.detector, Detection.detector_version, Detection.weights_sha256)
    for part in chunks(list(keyed), 200):  # four parameters a key: stay under SQLite's limit
        stored = session.execute(select(*columns).distinct().where(tuple_(*columns).in_(part)))
        for key in stored:
            keyed.pop(tuple(key), None)
    return insert_new(session, Detection, [row for group in keyed.values() for row in group], returning=True)
