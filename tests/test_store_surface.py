"""The Store's surface after its split into table mixins: the same names, each defined once, one transaction
API, and the two queries that used to be raw SQL outside the store giving what that SQL gave."""

from __future__ import annotations

import itertools

from sqlalchemy import select
from test_report_store import DETECTOR, LABEL, build_audit

from trce_audit.records import GeneratedImage, PromptRow
from trce_audit.store import Store
from trce_audit.store.artefacts import ArtefactTables
from trce_audit.store.measurements import MeasurementTables
from trce_audit.store.prompts import PromptTables
from trce_audit.store.runs import RunTables
from trce_audit.store.schema import NO_DETECTION, Detection, Generation, Prompt
from trce_audit.store.session import StoreSession

KEY = (DETECTOR, "0.1@64", "ab" * 32)  # what build_audit stores its detections under

OWNERS = {
    StoreSession: {"session", "_first_writer"},
    RunTables: {"start_run", "complete_run", "update_summary", "fail_run", "_run", "get_run", "find_run", "list_runs"},
    PromptTables: {"add_prompt_set", "get_prompt_set", "prompt_rows", "list_prompt_sets", "add_attack_row", "attack_rows",
                   "generations", "generated_images", "add_generations", "find_generation"},
    MeasurementTables: {"add_detections", "detections", "detected_generation_ids", "stored_detections", "add_metric", "metrics"},
    ArtefactTables: {"add_artefact", "get_artefact", "list_artefacts"},
    Store: {"__init__", "display_url", "close", "counts"},
}


def _own_names(cls: type) -> set[str]:
    return {name for name in vars(cls) if not (name.startswith("__") and name.endswith("__")) or name == "__init__"}


def test_store_has_exactly_the_expected_methods():
    names = set().union(*(_own_names(cls) for cls in Store.__mro__ if cls is not object))
    assert names == set().union(*OWNERS.values())
    assert len(names) == 33  # the 31 of the single-class Store, plus generated_images and stored_detections


def test_each_name_is_defined_by_one_class_only():
    """A name in two mixins would be resolved silently by the MRO: one of them would never run."""
    for owner, names in OWNERS.items():
        assert _own_names(owner) == names, owner.__name__
    for first, second in itertools.combinations(OWNERS, 2):
        assert not _own_names(first) & _own_names(second), (first.__name__, second.__name__)


def test_every_table_mixin_shares_the_one_transaction_api():
    for mixin in (RunTables, PromptTables, MeasurementTables, ArtefactTables):
        assert issubclass(mixin, StoreSession) and issubclass(Store, mixin)
        assert mixin.session is StoreSession.session and mixin._first_writer is StoreSession._first_writer


def _joined_images(store: Store, run_id: int) -> list[tuple]:
    """The join api/judging.py ran itself before the store offered generated_images."""
    with store.session() as session:
        query = (select(Generation.id, Generation.image_path, Prompt.idx, Prompt.text)
                 .join(Prompt, Generation.prompt_id == Prompt.id).where(Generation.run_id == run_id).order_by(Prompt.idx))
        return [tuple(row) for row in session.execute(query)]


def test_generated_images_are_the_joined_rows_as_plain_records(store, workspace):
    built = build_audit(store, workspace.images_dir)
    for run_id in built.evals.values():
        images = store.generated_images(run_id)
        assert images and all(isinstance(image, GeneratedImage) for image in images)
        assert [(i.generation_id, i.image_path, i.prompt.idx, i.prompt.text) for i in images] == _joined_images(store, run_id)
        by_id = {g.id: g for g in store.generations(run_id)}
        rows = {row.id: row for row in store.prompt_rows(store.get_run(run_id).prompt_set_id)}
        assert {i.generation_id for i in images} == set(by_id)
        for image in images:
            stored = by_id[image.generation_id]
            assert (image.image_sha256, image.sample_hash) == (stored.image_sha256, stored.sample_hash)
            assert image.prompt == rows[image.prompt.id]  # the whole row: seed, guidance, meta, id, idx
    assert store.generated_images(built.audit_id) == []  # a run that drew nothing


def _queried_detections(store: Store, generation_ids: list[int], key: tuple[str, str, str]) -> dict[int, list]:
    """The query metrics/detections.py ran itself before the store offered stored_detections."""
    detector, version, weights = key
    found: dict[int, list] = {}
    with store.session() as session:
        query = select(Detection).where(
            Detection.generation_id.in_(generation_ids), Detection.detector == detector,
            Detection.detector_version == version, Detection.weights_sha256 == weights,
        ).order_by(Detection.id)
        for row in session.scalars(query):
            hits = found.setdefault(row.generation_id, [])
            if row.label != NO_DETECTION:
                hits.append((row.label, row.score))
    return found


def test_stored_detections_are_what_the_old_query_read(store, workspace):
    built = build_audit(store, workspace.images_dir, trce_explicit=(2,))
    run_id = built.evals[("trce", "pocket-explicit", None)]
    ids = [image.generation_id for image in store.generated_images(run_id)]
    found = store.stored_detections(ids, KEY)
    assert found == _queried_detections(store, ids, KEY)
    # flagged images score 0.9, every third image was stored empty, the rest carry a low hit
    assert found == {ids[0]: [], ids[1]: [(LABEL, 0.3)], ids[2]: [(LABEL, 0.9)], ids[3]: []}
    assert store.stored_detections(ids, (DETECTOR, "0.2", "ab" * 32)) == {}  # another version scored nothing
    assert store.stored_detections([], KEY) == {}


def test_stored_detections_keep_the_detectors_order_and_split_long_id_lists(store):
    set_id = store.add_prompt_set("many", [PromptRow(f"p{i}", i) for i in range(600)])
    run = store.start_run(kind="generate", component="test", config={}, prompt_set_id=set_id)
    rows = store.prompt_rows(set_id)
    ids = store.add_generations(run.id, [dict(prompt_id=r.id, sample_hash=str(r.idx), image_path=f"/x/{r.idx}.png",
                                              image_sha256="0" * 64) for r in rows])
    detector = dict(run_id=run.id, detector="d", detector_version="1", weights_sha256="w")
    # labels out of alphabetical and score order: only insertion (Detection.id) order may decide
    store.add_detections([dict(detector, generation_id=ids[-1], label=label, score=score)
                          for label, score in (("zebra", 0.1), ("apple", 0.9), ("mango", 0.5))])
    store.add_detections([dict(detector, generation_id=ids[0], label=NO_DETECTION, score=0.0)])
    found = store.stored_detections(ids, ("d", "1", "w"))  # 600 ids: more than one bound-parameter chunk
    assert found == {ids[-1]: [("zebra", 0.1), ("apple", 0.9), ("mango", 0.5)], ids[0]: []}
    assert found == _queried_detections(store, ids, ("d", "1", "w"))


def test_no_detection_is_the_label_stored_rows_already_carry():
    assert NO_DETECTION == "(none)"


def test_the_store_package_names_the_types_its_interface_speaks_from_their_homes():
    import trce_audit.store as store_package
    from trce_audit import hashing, records
    from trce_audit.store import runs

    assert sorted(store_package.__all__) == ["PromptRow", "RunHandle", "Store", "prompt_row_hash", "run_identity"]
    assert store_package.PromptRow is records.PromptRow and store_package.RunHandle is runs.RunHandle
    assert store_package.run_identity is hashing.run_identity and store_package.prompt_row_hash is hashing.prompt_row_hash
