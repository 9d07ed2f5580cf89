"""Properties over the models a user names: `--model` strings (pocket, hub ids, folders, `artefact:ID`,
`+lora:PATH`), the pipeline folders they point at (model_index.json, component configs, the world marker
and guard record, weight files) and LoRA files. Each either resolves, and resolving again gives the same
model, or is refused with one ModelError/ConfigError line; nothing else escapes, and refusing a spec
writes nothing into the workspace. Offline: a hub id must fail at once, never wait on the network."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from fuzzing import assert_one_line_error, edge_text, examples, mutate, numbers_as_text, offline, printable_text, tree_digest
from hypothesis import example, given
from hypothesis import strategies as st

from trce_audit.errors import TrceAuditError
from trce_audit.models.families import PIPELINE_FAMILIES, default_size, family_name
from trce_audit.models.folder import GUARD_FILE, WORLD_MARKER, read_guard_record, world_of
from trce_audit.models.resolve import ModelRef, model_world, resolve_model
from trce_audit.store import Store
from trce_audit.workspace import Workspace

pytestmark = pytest.mark.fuzz

SCRATCH = Path(tempfile.mkdtemp(prefix="trce-fuzz-models-"))


@pytest.fixture(scope="module", autouse=True)
def _offline():
    """Hub ids resolve offline: HF_HUB_OFFLINE, and no name but this machine's resolves."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    with offline():
        yield
    if saved is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = saved


def _minimal_folder(path: Path, class_name: str = "StableDiffusionPipeline") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    for component, config in (("unet", {"sample_size": 8}), ("vae", {"block_out_channels": [4, 8]})):
        (path / component).mkdir(exist_ok=True)
        (path / component / "config.json").write_text(json.dumps(config))
    return path


_CONTEXT: dict[str, object] = {}


def context() -> tuple[Store, Workspace, Path]:
    """A store with one artefact (a minimal pipeline folder), made once for the module's examples."""
    if not _CONTEXT:
        workspace = Workspace.from_options(SCRATCH / "ws").ensure()
        store = Store(workspace.db_url)
        folder = _minimal_folder(SCRATCH / "artefact")
        run = store.start_run(kind="erase", component="esd-x", config={"fuzz": True})
        store.add_artefact(path=str(folder), sha256="ab" * 32, run_id=run.id, parent_model="pocket", parent_fingerprint="cd" * 32)
        # artefact 2: the folder the model-folder property fills with generated files (an artefact damaged on disk)
        store.add_artefact(path=str(SCRATCH / "folder"), sha256="ef" * 32, run_id=run.id, parent_model="pocket", parent_fingerprint="cd" * 32)
        _minimal_folder(SCRATCH / "plain")
        (SCRATCH / "not-a-pipeline").mkdir(exist_ok=True)
        (SCRATCH / "a-file").write_text("x")
        (SCRATCH / "lora.safetensors").write_bytes(b"")
        _CONTEXT.update(store=store, workspace=workspace)
    return _CONTEXT["store"], _CONTEXT["workspace"], SCRATCH  # type: ignore[return-value]


@pytest.fixture(scope="module", autouse=True)
def _close_store():
    yield
    if _CONTEXT:
        _CONTEXT["store"].close()  # type: ignore[union-attr]


MODEL_SPECS = st.one_of(
    st.sampled_from(["pocket", " pocket ", "artefact:1", "artefact:2", "1", "artefact:", "artefact:-1", "artefact:²", "²",
                     "artefact:99999999999999999999", "99999999999999999999", "artefact:1 ", "artefact: 1", "CompVis/stable-diffusion-v1-4",
                     "a/b/c", "/", "~", ".", "", "  ", "nudity", "owner/name\x00", "pocket+lora:", "+lora:x.safetensors",
                     "pocket+lora:{scratch}/lora.safetensors", "pocket+lora:{scratch}/a-file", "{scratch}/plain", "{scratch}/not-a-pipeline",
                     "{scratch}/a-file", "{scratch}/plain/", "{scratch}/no-such", "{scratch}/plain+lora:{scratch}/lora.safetensors"]),
    st.tuples(st.sampled_from(["artefact:", "", "{scratch}/", "org/", "pocket+lora:"]), st.one_of(numbers_as_text(), edge_text(10))).map("".join),
    edge_text(16),
)


@examples(1000)
@given(MODEL_SPECS)
@example("artefact:²")  # a superscript digit passes str.isdigit() (was exit 3: ValueError from int())
@example("²")
@example("artefact:99999999999999999999")  # past 64 bits (was exit 3: OverflowError in SQLite)
@example("~0")  # a ~user naming no user (was exit 3: RuntimeError from Path.expanduser)
@example("~nosuchuser/model+lora:~nosuchuser/x.safetensors")
def test_model_specs_resolve_or_are_refused_in_one_line(raw):
    store, workspace, scratch = context()
    spec = raw.replace("{scratch}", str(scratch))
    before = tree_digest(workspace.root)
    try:
        ref = resolve_model(spec, store=store, workspace=workspace)
        world = model_world(spec, store=store)
    except TrceAuditError as exc:
        assert_one_line_error(exc)
        after = {k: v for k, v in tree_digest(workspace.root).items() if not k.startswith("trce-audit.sqlite")}
        assert after == {k: v for k, v in before.items() if not k.startswith("trce-audit.sqlite")}, "a refused spec wrote into the workspace"
        return
    assert isinstance(ref, ModelRef) and ref.world == world and ref.path.is_dir()
    assert resolve_model(spec, store=store, workspace=workspace).fingerprint == ref.fingerprint  # resolving again: the same model
    if ref.artefact_id is not None:
        assert resolve_model(f"artefact:{ref.artefact_id}", store=store).path == ref.path


# ------------------------------------------------------------------------------------------ model folders
CLASS_NAMES = st.one_of(st.sampled_from(sorted(PIPELINE_FAMILIES) + ["DiffusionPipeline", "", "FluxPipeline "]), edge_text(8),
                        st.integers(), st.lists(st.text(max_size=3), max_size=2), st.none())
JSON_VALUES = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.none(),
                        st.booleans(), st.lists(st.integers(-4, 2048), max_size=5))


@st.composite
def model_folder(draw) -> dict[str, bytes | None]:
    """The files of a pipeline folder, valid or not: {relative path: bytes} (None: absent)."""
    files: dict[str, bytes | None] = {}
    index = {"_class_name": draw(CLASS_NAMES)}
    index.update(draw(st.dictionaries(st.sampled_from(["unet", "vae", "transformer", "_diffusers_version"]), JSON_VALUES, max_size=2)))
    document = index if draw(st.integers(0, 5)) else draw(st.one_of(JSON_VALUES, st.lists(JSON_VALUES, max_size=2)))
    files["model_index.json"] = mutate(draw, json.dumps(document).encode())
    for component in ("unet", "vae", "transformer"):
        if draw(st.booleans()):
            config = draw(st.fixed_dictionaries({}, optional={"sample_size": st.one_of(JSON_VALUES, st.lists(st.integers(1, 256), max_size=2)),
                                                              "block_out_channels": JSON_VALUES}))
            if draw(st.integers(0, 6)) == 0:
                config = draw(st.one_of(JSON_VALUES, st.lists(JSON_VALUES, max_size=2)))
            files[f"{component}/config.json"] = mutate(draw, json.dumps(config).encode())
    if draw(st.booleans()):
        marker = draw(st.one_of(st.fixed_dictionaries({"world": st.one_of(st.sampled_from(["sd", "pocket", "mars"]), JSON_VALUES)}), JSON_VALUES))
        files[WORLD_MARKER] = mutate(draw, json.dumps(marker).encode())
    if draw(st.integers(0, 3)) == 0:
        guard = draw(st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["sld", "safree", "nope"]), JSON_VALUES)},
                                           optional={"version": JSON_VALUES, "config": st.dictionaries(st.text(max_size=3), JSON_VALUES, max_size=2)}))
        files[GUARD_FILE] = mutate(draw, json.dumps(guard).encode())
    if draw(st.booleans()):
        name = draw(st.sampled_from(["unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin", "unet/model.ckpt"]))
        files[name] = draw(st.binary(max_size=64))
    return files


@examples(300)
@given(model_folder())
@example({"model_index.json": b"[1, 2]"})  # a JSON list (was exit 3: AttributeError)
@example({"model_index.json": b'{"_class_name": ["a"]}'})  # an unhashable class name (was exit 3: TypeError)
@example({"model_index.json": b'{"_class_name": "StableDiffusionPipeline"}', "unet/config.json": b'{"sample_size": "big"}',
          "vae/config.json": b'{"block_out_channels": [1, 2]}'})  # (was exit 3: ValueError from int())
@example({"model_index.json": b'{"_class_name": "StableDiffusionPipeline"}', "unet/config.json": b"[]", "vae/config.json": b"{}"})
@example({"model_index.json": b'{"_class_name": "StableDiffusionPipeline"}', "unet/config.json": b"{}", "vae/config.json": b'{"block_out_channels": 5}'})
@example({"model_index.json": b'{"_class_name": "StableDiffusionPipeline"}', WORLD_MARKER: b'{"world": ["sd"]}'})
@example({"model_index.json": b'{"_class_name": "StableDiffusionPipeline"}', GUARD_FILE: b'{"name": "sld", "version": 1, "config": []}'})
@example({"model_index.json": b"[" * 5000})
def test_model_folders_read_or_are_refused_in_one_line(files):
    store, workspace, scratch = context()
    folder = scratch / "folder"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    for read in (lambda: resolve_model(str(folder), store=store, workspace=workspace), lambda: resolve_model("artefact:2", store=store),
                 lambda: model_world("artefact:2", store=store), lambda: family_name(folder),
                 lambda: default_size(folder), lambda: world_of(folder), lambda: read_guard_record(folder), lambda: _load_guard(folder)):
        try:
            value = read()
        except TrceAuditError as exc:
            assert_one_line_error(exc)
            continue
        if isinstance(value, ModelRef):
            assert value.world in ("sd", "pocket") or isinstance(value.world, str)
        if isinstance(value, int):
            assert value > 0  # an image side
    assert isinstance(world_of(folder), str)


def _load_guard(folder: Path):
    from trce_audit.models.folder import load_guard

    return load_guard(folder)


# ------------------------------------------------------------------------------------------ LoRA files
@st.composite
def lora_bytes(draw) -> bytes:
    import torch
    from safetensors.torch import save

    keys = draw(st.lists(st.one_of(st.sampled_from(["unet.down.lora_A.weight", "unet.down.lora_B.weight", "down.lora_A.weight",
                                                   "transformer.x.lora_B.weight", "lora_unet_down.alpha"]), printable_text(1, 8)),
                         min_size=1, max_size=3, unique=True))
    metadata = draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(["lora_adapter_metadata", "format", "x"]),
                                                        st.one_of(st.just('{"unet.lora_alpha": 4}'), st.just('{"unet.lora_alpha": "high"}'),
                                                                  st.just("[1]"), st.just("[" * 3000), st.just("{}"), edge_text(8)), max_size=2)))
    data = save({key: torch.zeros(2, 2) for key in keys}, metadata=metadata)
    return mutate(draw, data)


@examples(200)
@given(lora_bytes())
@example(b"")
def test_lora_files_read_or_are_refused_in_one_line(data):
    from trce_audit.models.lora_files import read_lora_file

    path = SCRATCH / "fuzz-lora.safetensors"
    path.write_bytes(data)
    try:
        states, alphas = read_lora_file(path, "unet")
    except TrceAuditError as exc:
        assert_one_line_error(exc, names=[str(path)])
        return
    assert all(isinstance(alpha, float) for alpha in alphas.values())
