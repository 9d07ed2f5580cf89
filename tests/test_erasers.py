"""Contract tests every registered eraser must pass, plus the erase api and CLI.

Each eraser runs on the tiny random SD with a tiny config; the saved folder must load with
``StableDiffusionPipeline.from_pretrained`` and differ from its parent only in the tensors the method
is allowed to edit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trce_audit import registry
from trce_audit.data.concepts import Concept
from trce_audit.errors import ConfigError

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
CAPTIONS = ["a dog sleeping on a couch", "two people riding bikes", "a plate of pasta", "a red bus on a street", "a cat"]

# Every registered eraser needs a tiny config here: a new eraser without one fails the contract test.
TINY = {
    "trce": {
        "concept_num": 2, "augment_num": 2, "images_per_prompt": 1, "n_uncond": 2, "steps": 6,
        "max_early_step": 2, "iterations": 2, "latent_size": 8, "lr": 1e-3, "reg_batch_size": 2, "preserve_scale": 1e-2,
    },
    "esd-x": {"iterations": 2, "steps": 4, "latent_size": 8, "lr": 1e-3},
    "esd-u": {"iterations": 2, "steps": 4, "latent_size": 8, "lr": 1e-3},
    "esd-x-strict": {"iterations": 2, "steps": 4, "latent_size": 8, "lr": 1e-3},
    "uce": {"n_preserve": 4},
    "sld": {"preset": "max", "safety_concept": "nude, naked body"},
    "safree": {"up_t": 4},
    "speed": {"n_retain": 4, "caption_set": "coco-3k", "aug_num": 2},
    "rece": {"epochs": 2, "n_preserve": 2},
    "advunlearn": {"iterations": 3, "warmup_iter": 1, "attack_step": 2, "steps": 4, "latent_size": 8, "lr": 1e-3, "retain_batch": 2},
    "mace": {"augment_num": 2, "n_images": 1, "image_steps": 2, "train_steps": 2, "image_size": 16},
}
# Inference-time erasers change no tensor: their contract is the guard the saved folder carries, which
# loads with the folder and changes what the engine draws.
GUARDS = {"sld", "safree"}


def _xattn_kv(name: str) -> bool:
    return ".attn2.to_k." in name or ".attn2.to_v." in name


def _stage2(name: str) -> bool:
    return ".attn1." in name or ".attn2.to_q." in name


ALLOWED = {
    "trce": lambda n: _xattn_kv(n) or _stage2(n),
    "esd-x": lambda n: ".attn2." in n,
    "esd-x-strict": _xattn_kv,
    # the original ESD script leaves out the output layers (`out.`) and the time embedding
    "esd-u": lambda n: ".attn2." not in n and n.startswith("unet.") and not n.startswith(("unet.conv_out", "unet.time_embedding")),
    "uce": _xattn_kv,
    "sld": lambda n: False,
    "safree": lambda n: False,
    "speed": lambda n: ".attn2.to_v." in n,  # the reference's default edits values only
    "rece": _xattn_kv,
    # the text encoder's transformer layers and final norm; never its embeddings, never the UNet
    "advunlearn": lambda n: n.startswith("text_encoder.") and (".layers." in n or ".final_layer_norm." in n),
    "mace": _xattn_kv,  # the LoRAs are fused into attn2 to_k / to_v; the saved pipeline has none
}


def _state(folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    tensors = {f"unet.{k}": v for k, v in pipe.unet.state_dict().items()}
    tensors.update({f"text_encoder.{k}": v for k, v in pipe.text_encoder.state_dict().items()})
    return tensors


def _changed(before: dict, after: dict) -> set[str]:
    import torch

    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def _erase(store, workspace, folder, name, *, stages=None, overrides=None):
    from trce_audit.api import erase_concept

    return erase_concept(
        store, workspace, eraser=name, concept=CONCEPT, model=str(folder), overrides=overrides or TINY[name],
        stages=stages, captions=lambda set_name, limit: CAPTIONS[:limit] if limit else CAPTIONS, batch_size=4,
    )


@pytest.fixture(scope="module")
def parent_state(tiny_sd_dir):
    return _state(tiny_sd_dir)


def test_every_eraser_has_a_tiny_config():
    assert set(registry.names("eraser")) == set(TINY)


@pytest.mark.parametrize("name", registry.names("eraser"))
def test_eraser_contract(name, store, workspace, tiny_sd_dir, parent_state):
    from trce_audit.hashing import hash_tree

    cls = registry.load("eraser", name)
    assert cls.name == name and cls.version
    parent_hash = hash_tree(tiny_sd_dir)
    result = _erase(store, workspace, tiny_sd_dir, name)
    changed = _changed(parent_state, _state(result["path"]))
    if name in GUARDS:
        assert not changed, f"{name} is an inference-time eraser but changed {sorted(changed)[:3]}"
        _assert_guard_changes_images(result, tiny_sd_dir, name)
    else:
        assert changed, f"{name} changed nothing"
    assert all(ALLOWED[name](n) for n in changed), sorted(n for n in changed if not ALLOWED[name](n))
    artefact = store.get_artefact(result["artefact_id"])
    assert (artefact.meta.get("guard") or {}).get("name") == (name if name in GUARDS else None)
    assert set(artefact.meta["changed_params"]) == changed
    assert artefact.meta["eraser"] == name and artefact.parent_fingerprint
    run = store.get_run(result["run_id"])
    assert run.kind == "erase" and run.status == "complete" and run.summary["seconds"] > 0
    assert hash_tree(tiny_sd_dir) == parent_hash  # the parent folder is untouched
    assert artefact.sha256 == hash_tree(result["path"])


def _weights_sha(folder) -> str:
    """One hash over every tensor the saved folder holds (names and bytes, in name order)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(_state(folder).items()):
        h.update(name.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", registry.names("eraser"))
def test_erasing_twice_with_one_seed_writes_the_same_bytes(name, workspace, tiny_sd_dir, tmp_path):
    """Same seed, model, device and thread count: the same artefact, file for file (models/determinism.py).
    On a CPU no op of any eraser lacks a deterministic kernel, so every eraser records none."""
    from trce_audit.api import erase_concept
    from trce_audit.store import Store

    results = []
    for attempt in ("first", "second"):  # separate stores: the second erase is computed, not reused
        store = Store(f"sqlite:///{tmp_path / attempt}.db")
        results.append(erase_concept(
            store, workspace, eraser=name, concept=CONCEPT, model=str(tiny_sd_dir), overrides=TINY[name], batch_size=4,
            captions=lambda set_name, limit: CAPTIONS[:limit] if limit else CAPTIONS, out=tmp_path / attempt,
        ))
        artefact = store.get_artefact(results[-1]["artefact_id"])
        assert artefact.meta["nondeterministic_ops"] == [] and artefact.meta["threads"] >= 1
        assert store.get_run(results[-1]["run_id"]).runtime["threads"] == artefact.meta["threads"]
    assert results[0]["sha256"] == results[1]["sha256"]


@pytest.mark.parametrize("name", [n for n in registry.names("eraser") if registry.load("eraser", n).uses_seed()])
def test_another_seed_trains_other_weights(name, store, workspace, tiny_sd_dir, parent_state):
    """Every eraser whose ``seed`` is part of its method gives other weights for another seed, so that
    erasing under several seeds (an audit's ``seeds``) measures training variance, not one model thrice."""
    first = _erase(store, workspace, tiny_sd_dir, name)
    other = _erase(store, workspace, tiny_sd_dir, name, overrides={**TINY[name], "seed": 1})
    assert other["run_id"] != first["run_id"]
    assert _weights_sha(first["path"]) != _weights_sha(other["path"])


def test_closed_form_erasers_and_guards_have_no_seed():
    seeded = {n for n in registry.names("eraser") if registry.load("eraser", n).uses_seed()}
    assert seeded == {"esd-x", "esd-x-strict", "esd-u", "trce", "speed", "mace", "advunlearn"}
    assert not registry.load("eraser", "trce").uses_seed((1,))  # TRCE's stage 1 alone is a closed form


class PicklingExecutor:
    """In process, but the job and its result cross a pickle boundary as they do to a Ray actor."""

    def __init__(self):
        from trce_audit.execution.local import LocalExecutor

        self.local = LocalExecutor()

    def map_unordered(self, job, shards):
        cloudpickle = pytest.importorskip("ray.cloudpickle")
        sent = cloudpickle.loads(cloudpickle.dumps((job, list(shards))))
        for index, result in self.local.map_unordered(*sent):
            yield index, cloudpickle.loads(cloudpickle.dumps(result))

    def runtime(self):
        return {"executor": "pickling"}


@pytest.mark.parametrize("name", registry.names("eraser"))
def test_eraser_on_an_executor_writes_the_in_process_artefact(name, store, workspace, tiny_sd_dir, tmp_path):
    """A worker sends back the changed tensors; the driver's artefact is byte-identical (same sha256)."""
    from trce_audit.api import erase_concept
    from trce_audit.store import Store

    here = _erase(store, workspace, tiny_sd_dir, name)
    other = Store(f"sqlite:///{tmp_path / 'remote.db'}")
    remote = erase_concept(
        other, workspace, eraser=name, concept=CONCEPT, model=str(tiny_sd_dir), overrides=TINY[name], batch_size=4,
        captions=lambda set_name, limit: CAPTIONS[:limit] if limit else CAPTIONS, executor=PicklingExecutor(),
        out=tmp_path / "remote",
    )
    from trce_audit.hashing import sha256_file

    files = lambda root: {str(p.relative_to(root)): sha256_file(p) for p in Path(root).rglob("*") if p.is_file()}  # noqa: E731
    a, b = files(here["path"]), files(remote["path"])
    assert {k for k in a if a[k] != b.get(k)} == set()
    assert remote["sha256"] == here["sha256"] and remote["changed_params"] == here["changed_params"]
    assert set(remote["stats"]) == set(here["stats"])  # the values may differ in cache hits only
    assert other.get_run(remote["run_id"]).runtime["executor"] == "pickling"


def _batch_request(name, tiny_sd_dir):
    return dict(eraser=name, concept=CONCEPT, model=str(tiny_sd_dir), overrides=TINY[name], batch_size=4, device="cpu",
                captions=lambda set_name, limit: CAPTIONS[:limit] if limit else CAPTIONS)


def test_a_batch_of_erases_on_an_executor_gives_each_serial_artefact_once(store, workspace, tiny_sd_dir, tmp_path):
    """An audit's erasers at once: each artefact is the serial one, results come in request order, and
    a request repeated in the batch is one run."""
    from trce_audit.orchestration.erase_runs import erase_all
    from trce_audit.store import Store

    serial = {name: _erase(store, workspace, tiny_sd_dir, name) for name in ("uce", "rece")}
    other = Store(f"sqlite:///{tmp_path / 'batch.db'}")
    heard = []
    batch = erase_all(other, workspace, [_batch_request(n, tiny_sd_dir) for n in ("rece", "uce", "rece")],
                      executor=PicklingExecutor(), on_done=lambda index, record: heard.append(index))
    assert [r["sha256"] for r in batch] == [serial["rece"]["sha256"], serial["uce"]["sha256"], serial["rece"]["sha256"]]
    assert batch[0]["run_id"] == batch[2]["run_id"] != batch[1]["run_id"] and sorted(heard) == [0, 1, 2]
    runs = other.list_runs(kind="erase")
    assert len(runs) == 2 and {r.status for r in runs} == {"complete"} and len(other.list_artefacts()) == 2
    again = erase_all(other, workspace, [_batch_request("uce", tiny_sd_dir)], executor=PicklingExecutor())
    assert again[0]["reused"] and again[0]["run_id"] == batch[1]["run_id"]


def test_a_failing_erase_of_a_batch_fails_its_run_alone_and_the_rerun_redoes_only_it(workspace, tiny_sd_dir, tmp_path, monkeypatch):
    from trce_audit.orchestration.erase_runs import erase_all
    from trce_audit.store import Store

    store = Store(f"sqlite:///{tmp_path / 'batch.db'}")
    rece = registry.load("eraser", "rece")

    def boom(self, pipe, concept, context):
        raise RuntimeError("rece diverged")

    monkeypatch.setattr(rece, "erase", boom)
    requests = [_batch_request(n, tiny_sd_dir) for n in ("rece", "uce")]
    with pytest.raises(RuntimeError, match="rece diverged"):
        erase_all(store, workspace, requests, executor=PicklingExecutor())
    status = {r.component: (r.status, r.error) for r in store.list_runs(kind="erase")}
    assert status["uce"][0] == "complete" and status["rece"] == ("failed", "RuntimeError: rece diverged")
    assert [a.meta["eraser"] for a in store.list_artefacts()] == ["uce"]
    assert not [p for p in workspace.artefacts_dir.iterdir() if p.name.startswith(".")]  # no staging folder left
    monkeypatch.undo()
    rerun = erase_all(store, workspace, requests, executor=PicklingExecutor())
    assert [r["reused"] for r in rerun] == [False, True] and len(store.list_runs(kind="erase")) == 2

    elsewhere = Concept("cross", CONCEPT.pairs, world="pocket")  # refused before any erase: no run left started
    with pytest.raises(ConfigError, match="pocket world"):
        erase_all(store, workspace, [_batch_request("speed", tiny_sd_dir), {**_batch_request("uce", tiny_sd_dir), "concept": elsewhere}],
                  executor=PicklingExecutor())
    speed = [r for r in store.list_runs(kind="erase") if r.component == "speed"]
    assert [(r.status, r.error.split(":")[0]) for r in speed] == [("failed", "stopped before it finished")]


def _assert_guard_changes_images(result, parent_dir, name):
    import torch

    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.engine import BatchSampler
    from trce_audit.models.resolve import load_pipeline, resolve_model
    from trce_audit.store import PromptRow

    guarded_ref, parent_ref = resolve_model(result["path"]), resolve_model(str(parent_dir))
    assert guarded_ref.guard == name and parent_ref.guard is None
    assert guarded_ref.fingerprint != parent_ref.fingerprint  # the guard is part of the model's identity
    settings = GenerationSettings(steps=3, height=32, width=32).validate()
    rows = [PromptRow("a nude person", seed=3, guidance=7.5)]
    guarded, plain = load_pipeline(guarded_ref), load_pipeline(parent_ref)
    assert guarded.trce_guard.name == name and plain.trce_guard is None
    drawn = [BatchSampler(pipe, settings).denoise(rows) for pipe in (guarded, plain)]
    assert not torch.allclose(drawn[0], drawn[1], atol=1e-3)


def test_closed_form_erasers_edit_every_key_and_value(store, workspace, tiny_sd_dir, parent_state):
    expected = {n for n in parent_state if _xattn_kv(n) and n.endswith(".weight")}
    for name, stages in (("uce", None), ("trce", "1")):
        result = _erase(store, workspace, tiny_sd_dir, name, stages=stages)
        assert _changed(parent_state, _state(result["path"])) == expected


def test_trce_stage2_alone_trains_self_attention_and_queries(store, workspace, tiny_sd_dir, parent_state):
    result = _erase(store, workspace, tiny_sd_dir, "trce", stages="2")
    changed = _changed(parent_state, _state(result["path"]))
    assert changed and all(_stage2(n) for n in changed)
    assert any(".attn2.to_q." in n for n in changed) and any(".attn1.to_out." in n for n in changed)


def test_world_marker_is_copied(store, workspace, tmp_path):
    from trce_audit.models.resolve import resolve_model
    from trce_audit.models.tiny import save_pipeline

    folder = save_pipeline(tmp_path / "pocketish", "tiny", seed=1)
    (folder / "trce_audit.json").write_text(json.dumps({"world": "pocket"}))
    pocket_concept = Concept("shape", (("red square", "blue circle"),), world="pocket", detector="pocket")
    from trce_audit.api import erase_concept

    result = erase_concept(
        store, workspace, eraser="uce", concept=pocket_concept, model=str(folder), overrides={"n_preserve": 0},
    )
    marker = json.loads((Path(result["path"]) / "trce_audit.json").read_text())
    assert marker["world"] == "pocket" and marker["erasure"]["eraser"] == "uce"
    assert resolve_model(f"artefact:{result['artefact_id']}", store=store, workspace=workspace).world == "pocket"


def test_rerun_returns_the_stored_artefact_without_recomputing(store, workspace, tiny_sd_dir, monkeypatch):
    first = _erase(store, workspace, tiny_sd_dir, "uce")
    counts = store.counts()
    from trce_audit.erasers.uce import UCE

    def must_not_run(*args, **kwargs):
        raise AssertionError("the erase was recomputed")

    monkeypatch.setattr(UCE, "apply", must_not_run)
    second = _erase(store, workspace, tiny_sd_dir, "uce")
    assert second["reused"] and not first["reused"]
    assert (second["artefact_id"], second["path"]) == (first["artefact_id"], first["path"])
    assert store.counts() == counts
    with pytest.raises(AssertionError, match="recomputed"):  # a different config is a different erase
        _erase(store, workspace, tiny_sd_dir, "uce", overrides={"n_preserve": 3})


def test_erase_by_concept_name_through_the_cli(cli, store, workspace, tiny_sd_dir, monkeypatch):
    import trce_audit.data as data

    seen = {}

    def fake_load_concept(name, *, world="sd", workspace=None):
        seen["args"] = (name, world)
        return CONCEPT

    monkeypatch.setattr(data, "load_concept", fake_load_concept, raising=False)
    code, out, err = cli("erase", "uce", "--concept", "nudity", "--model", str(tiny_sd_dir), "--set", "n_preserve=0", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert seen["args"] == ("nudity", "sd")
    code, out, err = cli("models", "--json")
    assert code == 0 and f"artefact:{result['artefact_id']}" in {row["model"] for row in json.loads(out)}
    code, out, _ = cli("erase", "uce", "--concept", "nudity", "--model", f"artefact:{result['artefact_id']}", "--set", "n_preserve=0")
    assert code == 0 and "artefact" in out and "--model artefact:" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "bogus=1"], "unknown config key 'bogus'"),
        (["--set", "lamb=abc"], "config key 'lamb' expects a number"),
        (["--set", "guide=nowhere"], "config key 'guide' must be one of"),
        (["--set", "lamb"], "--set expects key=value"),
        (["--stages", "1"], "no stages"),
    ],
)
def test_cli_config_errors_are_one_line_and_store_nothing(cli, store, tiny_sd_dir, monkeypatch, args, message):
    import trce_audit.data as data

    asked = []
    monkeypatch.setattr(data, "load_concept", lambda name, **kw: asked.append(name) or CONCEPT, raising=False)
    before = store.counts()
    code, out, err = cli("erase", "uce", "--concept", "nudity", "--model", str(tiny_sd_dir), *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert store.counts() == before
    # a bad --set fails before the concept loads (and before the model is fingerprinted); --stages after it
    assert asked == (["nudity"] if "no stages" in message else [])


@pytest.mark.parametrize("name", registry.names("eraser"))
def test_cli_unknown_config_key_names_the_known_keys(cli, store, tiny_sd_dir, monkeypatch, name):
    """Every eraser: an unknown key exits 2 with one line that lists the eraser's own keys; nothing stored."""
    import dataclasses

    import trce_audit.data as data

    asked = []
    monkeypatch.setattr(data, "load_concept", lambda name, **kw: asked.append(name) or CONCEPT, raising=False)
    before = store.counts()
    code, out, err = cli("erase", name, "--concept", "nudity", "--model", str(tiny_sd_dir), "--set", "bogus=1")
    assert code == 2 and out == "" and err.count("\n") == 1 and asked == []  # refused before the concept loads
    known = [f.name for f in dataclasses.fields(registry.load("eraser", name).Config)]
    assert "unknown config key 'bogus'" in err and all(key in err for key in known)
    assert store.counts() == before


def test_cli_rejects_bad_stages_and_unknown_eraser(cli, tiny_sd_dir, monkeypatch):
    import trce_audit.data as data

    asked = []
    monkeypatch.setattr(data, "load_concept", lambda name, **kw: asked.append(name) or CONCEPT, raising=False)
    code, _, err = cli("erase", "trce", "--concept", "nudity", "--model", str(tiny_sd_dir), "--stages", "3")
    assert code == 2 and "--stages must be 1, 2 or 1,2" in err and asked == ["nudity"]
    code, _, err = cli("erase", "nope", "--concept", "nudity", "--model", str(tiny_sd_dir))
    assert code == 2 and "unknown eraser 'nope'" in err


def test_erasers_listing(cli):
    code, out, _ = cli("erasers", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and set(rows) == set(TINY)
    assert rows["trce"]["defaults"]["sd"]["lr"] == 1e-6 and rows["trce"]["defaults"]["pocket"]["caption_set"] == "pocket-general"


def test_default_stages_and_explicit_1_2_are_the_same_erase(store, workspace, tiny_sd_dir, monkeypatch):
    from trce_audit.erasers.trce import TRCE

    calls = []
    monkeypatch.setattr(TRCE, "apply", lambda self, pipe, concept, context: calls.append(context.stages) or ({}, {}))
    first = _erase(store, workspace, tiny_sd_dir, "trce")
    again = _erase(store, workspace, tiny_sd_dir, "trce", stages="2,1")
    only_one = _erase(store, workspace, tiny_sd_dir, "trce", stages="1")
    assert calls == [(1, 2), (1,)]
    assert again["reused"] and again["artefact_id"] == first["artefact_id"] != only_one["artefact_id"]


def test_preserved_captions_leave_out_rows_that_ask_for_the_erased_concept(workspace):
    from trce_audit.data import load_prompt_set
    from trce_audit.orchestration.erase_inputs import captions_from_data

    rows = load_prompt_set("pocket-general", workspace=workspace)
    showing = {r.text for r in rows if "cross" in r.meta["concepts"]}
    assert showing, "pocket-general is expected to contain rows with a cross"
    captions = captions_from_data(workspace, "cross")
    first = captions("pocket-general", 100)
    assert len(first) == 100 and not showing & set(first)
    assert len(captions("pocket-general", None)) == sum("cross" not in r.meta["concepts"] for r in rows)
    # a concept no row asks for keeps the set as it is
    assert captions_from_data(workspace, "nudity")("pocket-general", 100) == [r.text for r in rows[:100]]


def test_esd_target_is_the_papers_negative_guidance():
    import torch

    from trce_audit.erasers.esd import negative_guidance_target

    cond, uncond = torch.tensor([3.0]), torch.tensor([1.0])
    assert float(negative_guidance_target(cond, uncond, 0.0)) == 1.0  # η 0: the unconditional prediction
    assert float(negative_guidance_target(cond, uncond, 1.0)) == -1.0  # η 1 (paper default): reflected about it

