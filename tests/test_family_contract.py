"""Every registered attack, eraser and metric against every model family beyond SD: it runs, or it
refuses in one line that names the component and the model's family, before any weights load."""

from __future__ import annotations

import math

import pytest

from metric_fixtures import FIXTURES, eval_run, stored_images
from trce_audit import api, registry
from trce_audit.errors import ConfigError
from trce_audit.erasers.base import Eraser
from trce_audit.generation.engine import BatchSampler
from trce_audit.generation.settings import GenerationSettings
from trce_audit.models.tiny import build_pipeline, save_pipeline
from trce_audit.records import PromptRow

FAMILIES = ("sdxl", "sd3", "flux")
# Budgets that keep an erase on a tiny shape to seconds (the plumbing is under test, not the erasure).
QUICK_ERASE = {
    "uce": {"n_preserve": 4},
    "esd-x": {"iterations": 2, "steps": 4, "latent_size": 8},
    "esd-x-strict": {"iterations": 2, "steps": 4, "latent_size": 8},
    "trce": {"concept_num": 2, "augment_num": 1, "n_captions": 4, "iterations": 2, "images_per_prompt": 1,
             "steps": 4, "max_early_step": 2, "n_uncond": 2, "reg_batch_size": 2, "latent_size": 8},
}

# Budgets that keep an attack that runs on a tiny shape to seconds (tests/test_attack_contract.py's TINY).
QUICK_ATTACK = {
    "finetune-resurgence": {"steps": 2, "checkpoints": 2, "n_images": 2, "gradient_accumulation": 1, "target_steps": 1},
    "concept-inversion": {"steps": 1, "n_images": 2, "train_batch_size": 1, "gradient_accumulation": 1,
                          "target_steps": 1, "eval_draws": 1, "initializer": "a"},  # one token in every tiny tokenizer
    # the judge (NudeNet on the target's 32-px images) still runs: after each timestep / evaluation
    "unlearndiff": {"timesteps": 2, "iterations": 2, "k": 2, "target_steps": 2},
    "p4d-n": {"iterations": 2, "prompt_len": 3, "eval_every": 1, "eval_draws": 1, "target_steps": 2},
    "p4d-k": {"iterations": 2, "eval_every": 1, "eval_draws": 1, "target_steps": 2},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {shape: str(save_pipeline(root / shape, shape=shape)) for shape in FAMILIES}


def _refused(exc: pytest.ExceptionInfo, what: str, family: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"the {what} runs on ") and f"is a {family} model" in message


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", registry.names("attack"))
def test_attack_runs_or_refuses_in_one_line(shared_data, store, workspace, folders, family, name):
    cls = registry.load("attack", name)
    call = dict(name=name, model=folders[family], concept="nudity", prompts="mma-diffusion", limit=2,
                budget=QUICK_ATTACK.get(name), settings={"steps": 2, "height": 32, "width": 32, "device": "cpu"})
    if family not in cls.families:
        with pytest.raises(ConfigError) as exc:
            api.attack(store, workspace, **call)
        _refused(exc, f"{name} attack", family)
        assert ("--transfer-from" in str(exc.value)) == cls.text_encoder_only  # the way to run it, where there is one
        assert not store.list_runs()  # refused before anything was stored
        return
    summary = api.attack(store, workspace, **call)
    assert summary["n_prompts"] == 2 and summary["asr_after"] is not None  # the after-attack images were scored
    assert folders[family] in str(summary["target_model"])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", registry.names("eraser"))
def test_eraser_runs_or_refuses_in_one_line(shared_data, store, workspace, folders, family, name):
    cls = registry.load("eraser", name)
    if family not in cls.families:
        with pytest.raises(ConfigError) as exc:
            api.erase(store, workspace, eraser=name, concept="nudity", model=folders[family], device="cpu")
        _refused(exc, f"{name} eraser", family)
        assert not store.list_runs()
        return
    import diffusers

    from trce_audit.models.families import PIPELINE_CLASS, load_family

    record = api.erase(store, workspace, eraser=name, concept="nudity", model=folders[family], device="cpu",
                       overrides=QUICK_ERASE.get(name))  # every stage, TRCE's stage 2 on FLUX included
    pipe = getattr(diffusers, PIPELINE_CLASS[family]).from_pretrained(record["path"])  # loads as its family
    denoiser = getattr(pipe, load_family(family).denoiser)
    edited = {f"{name}.weight" for name in load_family(family).text_projections(denoiser)}
    changed = set(store.get_artefact(record["artefact_id"]).meta["changed_params"])
    if cls.guard_record is not Eraser.guard_record:  # an inference-time guard: no weight moves, the folder carries it
        assert not changed and record["guard"] == name
        return
    prefix = load_family(family).denoiser + "."
    assert changed and all(c.startswith(prefix) for c in changed)  # the denoiser's weights only
    if name == "uce":  # a closed form on the projections that read text, and nothing else
        assert {c[len(prefix):] for c in changed} <= edited


@pytest.fixture(scope="module")
def family_images():
    """Six 32-px images from each tiny family, drawn by the engine (what an eval of that family scores)."""
    rows = [PromptRow(f"a photo of a person number {i}", seed=i, guidance=5.0) for i in range(6)]
    settings = GenerationSettings(steps=2, height=32, width=32, device="cpu").validate()
    return {family: BatchSampler(build_pipeline(family, seed=0), settings).sample(rows) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", registry.names("metric"))
def test_every_metric_scores_every_family(store, tmp_path, family_images, family, name):
    """A metric scores images, whatever drew them: each gives well-formed numbers on each family's."""
    runner = FIXTURES[name].runner(tmp_path / "side")
    images = stored_images(store, list(family_images[family]), tmp_path / family)
    values = runner.score(store, eval_run(store), images)
    assert values and all(0 < value.n <= len(images) and math.isfinite(value.value) for value in values)


TRANSFER_BUDGET = {"ring-a-bell": {"population": 4, "generations": 2, "length": 3},
                   "mma-diffusion": {"iterations": 2, "candidates": 8, "length": 4}}


@pytest.fixture(scope="module")
def sd_source(tmp_path_factory):
    return str(save_pipeline(tmp_path_factory.mktemp("source") / "sd", shape="tiny"))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", [n for n in registry.names("attack") if registry.load("attack", n).text_encoder_only])
def test_a_text_encoder_search_runs_as_a_transfer(shared_data, store, workspace, folders, sd_source, family, name):
    """Searched on an SD model's text encoder, replayed on the target: the run names its search model
    and the report labels the row as a transfer."""
    from trce_audit.reports.collect import collect

    assert name in TRANSFER_BUDGET, "a new text-encoder attack needs a tiny transfer budget here"
    summary = api.attack(store, workspace, name=name, model=folders[family], concept="nudity", prompts="mma-diffusion",
                         limit=2, budget=TRANSFER_BUDGET[name], transfer_from=sd_source,
                         settings={"steps": 2, "height": 32, "width": 32, "device": "cpu"})
    assert summary["transfer_from"]["spec"] == sd_source and summary["n_prompts"] == 2
    assert summary["asr_before"] is not None and summary["asr_after"] is not None  # both measured on the target
    run = store.get_run(summary["run_id"])
    assert run.model_ref == folders[family] and run.summary["transfer_from"]["spec"] == sd_source
    rows = [row for row in collect(store, run_ids=[run.id]).rows if row.attack]
    assert [row.attack for row in rows] == [f"{name} (transfer from {sd_source})"]


def test_an_attack_that_needs_the_targets_images_cannot_transfer(shared_data, store, workspace, folders, sd_source):
    with pytest.raises(ConfigError) as exc:
        api.attack(store, workspace, name="unlearndiff", model=folders["flux"], concept="nudity", transfer_from=sd_source)
    assert "cannot transfer" in str(exc.value) and "ring-a-bell" in str(exc.value) and "\n" not in str(exc.value)
