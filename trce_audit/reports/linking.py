"""How runs link up in the store (see collect.py): summaries that name run ids, an audit's or attack's
children, and the models the runs used matched to the erase runs' artefacts."""

from __future__ import annotations

import json
from typing import Any, Iterable

from sqlalchemy import select

from ..errors import StoreError
from ..store import Store
from ..store.schema import Artefact, PromptSet, Run
from ..store.session import storable_id
from .views import ModelView, RunInfo


def linked_run_ids(summary: Any) -> set[int]:
    """Run ids a summary names under keys ending in ``run_id`` / ``run_ids`` or starting with ``eval_run``."""
    found: set[int] = set()

    def ids_in(value: Any) -> Iterable[int]:
        if isinstance(value, bool):
            return ()
        if isinstance(value, int):
            return (value,)
        if isinstance(value, (list, tuple)):
            return [item for sub in value for item in ids_in(sub)]
        if isinstance(value, dict):
            return [item for sub in value.values() for item in ids_in(sub)]
        return ()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                if str(key).endswith(("run_id", "run_ids")) or str(key).startswith("eval_run"):
                    found.update(ids_in(sub))
                else:
                    walk(sub)
        elif isinstance(value, list):
            for sub in value:
                walk(sub)

    walk(summary)
    return found


def latest_audit_id(store: Store) -> int:
    audits = store.list_runs(kind="audit", limit=1)
    if not audits:
        raise StoreError("no audit run in the store; run `trce-audit audit` first or pass --runs")
    return audits[0].id


def audit_id_of(store: Store, ref: str) -> int:
    """An audit named by its spec's name (the latest audit of that spec) or by its run id; a name made
    of digits is a name when an audit of that spec exists."""
    ref = ref.strip()
    with store.session() as session:
        named = session.execute(select(Run.id, Run.config).where(Run.kind == "audit").order_by(Run.id.desc())).all()
    for run_id, config in named:
        if isinstance(config, dict) and config.get("name") == ref:
            return run_id
    if ref.isdigit() and ref.isascii():
        return int(ref)
    raise StoreError(f"no audit of a spec named {ref[:80]!r} in the store")


class Reader:
    """Loads runs with their prompt-set names once per collection."""

    def __init__(self, store: Store):
        self.store = store
        self.runs: dict[int, Run] = {}
        self.set_names: dict[int, str] = {}
        self.adversarial_sets: dict[int, int] = {}  # prompt set id -> attack run id

    def load(self, run_ids: Iterable[int]) -> list[Run]:
        wanted = [rid for rid in set(run_ids) if rid not in self.runs and storable_id(rid)]  # an id past 64 bits names no run
        if wanted:
            with self.store.session() as session:
                for run in session.scalars(select(Run).where(Run.id.in_(wanted))):
                    self.runs[run.id] = run
                set_ids = {run.prompt_set_id for run in self.runs.values() if run.prompt_set_id is not None}
                for prompt_set in session.scalars(select(PromptSet).where(PromptSet.id.in_(set_ids))):
                    self.set_names[prompt_set.id] = prompt_set.name
                    if prompt_set.run_id is not None:
                        self.adversarial_sets[prompt_set.id] = prompt_set.run_id
        return [self.runs[rid] for rid in run_ids if rid in self.runs]

    def children(self, run_id: int) -> list[int]:
        with self.store.session() as session:
            return list(session.scalars(select(Run.id).where(Run.parent_run_id == run_id)))

    def linked(self, run: Run) -> set[int]:
        return (set(self.children(run.id)) | linked_run_ids(run.summary or {})) - {run.id}

    def info(self, run: Run) -> RunInfo:
        return RunInfo.of(run, self.set_names.get(run.prompt_set_id) if run.prompt_set_id else None)


def models_of(store: Store, reader: "Reader", refs: dict[str, str | None]) -> dict[str, ModelView]:
    """ModelViews for the model specs the runs used, matched to artefacts of erase runs where they are one."""
    with store.session() as session:
        artefacts = list(session.scalars(select(Artefact).order_by(Artefact.id)))
    by_id = {a.id: a for a in artefacts}
    views: dict[str, ModelView] = {}
    for ref, fingerprint in refs.items():
        artefact = None
        if ref.startswith("artefact:") and ref.split(":", 1)[1].isascii() and ref.split(":", 1)[1].isdigit():
            artefact = by_id.get(int(ref.split(":", 1)[1]))
        artefact = artefact or next((a for a in artefacts if a.path == ref), None)
        if artefact is None and fingerprint:
            artefact = next((a for a in artefacts if a.sha256 == fingerprint), None)
        meta = dict(artefact.meta or {}) if artefact else {}
        erase_run = reader.load([artefact.run_id])[0] if artefact and artefact.run_id else None
        eraser = meta.get("eraser") or (erase_run.component if erase_run is not None else None)
        stages = meta.get("stages") or (meta.get("stats") or {}).get("stages")
        # An eraser run with only some of its stages (TRCE stage 1 alone) is a different model to compare.
        key = f"{eraser}[stage {','.join(map(str, stages))}]" if eraser and stages and len(stages) == 1 else eraser
        views[ref] = ModelView(
            ref=ref,
            key=str(key) if eraser else ref,
            fingerprint=fingerprint or (artefact.sha256 if artefact else None),
            eraser=str(eraser) if eraser else None,
            concept=meta.get("concept"),
            artefact_id=artefact.id if artefact else None,
            erase_run_id=artefact.run_id if artefact else None,
            erase_config=dict(erase_run.config or {}) if erase_run is not None else {},
            parent_model=artefact.parent_model if artefact else None,
            erase_runtime=dict(erase_run.runtime or {}) if erase_run is not None else {},
        )
    _name_seeds(views.values())
    # Two erased models with the same eraser (different configs) keep distinct keys.
    seen: dict[str, int] = {}
    for view in views.values():
        seen[view.key] = seen.get(view.key, 0) + 1
    for view in views.values():
        if seen[view.key] > 1 and view.artefact_id is not None:
            view.key = f"{view.key}#{view.artefact_id}"
    return views




def _name_seeds(views: Iterable[ModelView]) -> None:
    """Erased models that differ only in their training seed (an audit's ``seeds``) share a group: each
    is keyed "KEY[seed N]" under the group KEY. A lone seed keeps the plain key."""
    groups: dict[tuple[str, str, str | None], list[ModelView]] = {}
    for view in views:
        if view.erased and isinstance(view.erase_config.get("seed"), int):
            rest = json.dumps({k: v for k, v in view.erase_config.items() if k != "seed"}, sort_keys=True, default=str)
            groups.setdefault((view.key, rest, view.parent_model), []).append(view)
    for members in groups.values():
        if len({view.erase_config["seed"] for view in members}) < 2:
            continue
        for view in members:
            view.seed, view.group = int(view.erase_config["seed"]), view.key
            view.key = f"{view.key}[seed {view.seed}]"
