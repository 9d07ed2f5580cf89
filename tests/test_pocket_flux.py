"""pocket-flux, the pocket world's FLUX-architecture model: its builder, its trainer, its size budget,
``--model pocket-flux`` through the CLI, and (with the shipped weights) its quality bars."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import trce_audit
from test_pocket_scorers import draw_set
from tolerance import path_atol
from trce_audit.models import builtin
from trce_audit.pocket import flux_models
from trce_audit.pocket.models import MODEL_DIR

needs_pocket = pytest.mark.skipif(not (MODEL_DIR / "model_index.json").exists(), reason="pocket weights not built")
needs_flux = pytest.mark.skipif(not (flux_models.FLUX_MODEL_DIR / "model_index.json").exists(),
                                reason="pocket-flux weights not shipped (python -m trce_audit.pocket.train_flux, docs/pocket-world.md)")
PROMPT = "a picture of a small red cross at the top on black"
WHEEL_LIMIT = 60 * 10**6  # the budget for the wheel, with both pocket models inside


def install_flux(monkeypatch, folder: Path) -> None:
    """``folder`` stands in for the installed pocket-flux (an absolute folder replaces the weights
    directory when builtin.py joins the two)."""
    entry = builtin.BUILTINS["pocket-flux"]
    monkeypatch.setitem(builtin.BUILTINS, "pocket-flux", type(entry)(entry.description, str(folder), entry.remedy))


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory) -> Path:
    """A pocket-flux folder trained for 2 steps a phase: the real trainer's output, in seconds."""
    from trce_audit.pocket.train_flux import main

    if not (MODEL_DIR / "model_index.json").exists():
        pytest.skip("pocket weights not built")
    out = tmp_path_factory.mktemp("pocket-flux") / "pocket-flux"
    with torch.random.fork_rng():
        main(["--out", str(out), "--seed", "0", "--max-steps", "2", "--batch", "4", "--pool-batches", "1",
              "--stat-batches", "1", "--log-every", "1"])
    return out


def sample(pipe, steps=2):
    from trce_audit.pocket.flux_models import IMAGE_SIZE, T5_LENGTH

    return pipe(PROMPT, height=IMAGE_SIZE, width=IMAGE_SIZE, num_inference_steps=steps, guidance_scale=3.5,
                max_sequence_length=T5_LENGTH, generator=torch.Generator().manual_seed(0), output_type="pt").images


def test_stored_size_of_the_real_config_is_within_budget():
    from trce_audit.pocket.flux_builders import stored_bytes
    from trce_audit.pocket.flux_models import STORED_BYTES_LIMIT

    sizes = stored_bytes()
    assert sum(sizes.values()) <= STORED_BYTES_LIMIT, sizes
    assert sizes["transformer"] > 0 and sizes["text_encoder_2"] > 0


@needs_pocket
def test_t5_ids_are_the_tokenizer_at_t5_length():
    from transformers import CLIPTokenizer

    from trce_audit.pocket.flux_models import T5_LENGTH
    from trce_audit.pocket.flux_training import t5_ids

    tok = CLIPTokenizer.from_pretrained(MODEL_DIR / "tokenizer")
    long = " and ".join(["a big purple shape with four arms of equal length"] * 4)  # runs past T5_LENGTH
    for text in (PROMPT, long, ""):
        full = tok([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        short = tok([text], padding="max_length", max_length=T5_LENGTH, truncation=True, return_tensors="pt").input_ids
        assert torch.equal(t5_ids(full), short), text


@needs_pocket
def test_builder_makes_a_flux_pipeline_that_draws_at_the_pocket_size():
    from diffusers import FluxPipeline

    from trce_audit.pocket.flux_builders import random_pipeline

    pipe = random_pipeline(seed=0)
    assert isinstance(pipe, FluxPipeline) and pipe.transformer.config.guidance_embeds
    assert pipe.transformer.config.in_channels == 4 * pipe.vae.config.latent_channels
    head = pipe.transformer.config.attention_head_dim
    assert sum(pipe.transformer.config.axes_dims_rope) == head
    image = sample(pipe)
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()


@needs_pocket
def test_distillation_target_at_guidance_one_is_the_conditional_velocity(monkeypatch):
    """A student that is its teacher, at w = 1, meets the target v_u + 1 (v_c - v_u) = v_c: loss zero up to
    batching (the teacher runs 2n rows, the student n). A target built from swapped halves would be v_u."""
    from trce_audit.models.families import load_family
    from trce_audit.pocket import flux_fit
    from trce_audit.pocket.flux_builders import random_pipeline
    from trce_audit.pocket.flux_models import T5_LENGTH

    family, pipe = load_family("flux"), random_pipeline(seed=1)
    cond = family.encode(pipe, [PROMPT, "a blue ring on grass"], "cpu", torch.float32, T5_LENGTH)
    uncond = family.unconditional(pipe, "cpu", torch.float32, T5_LENGTH)
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(flux_fit, "GUIDANCE_RANGE", (1.0, 1.0))
    with torch.no_grad():
        loss = flux_fit.distill_objective(family, pipe, torch.Generator().manual_seed(3), pipe.transformer, uncond)(
            pipe.transformer, x0, cond)
        t, x_t, _ = flux_fit.noised_batch(family, pipe, x0, torch.Generator().manual_seed(3))
        v_c = flux_fit.velocity(family, pipe, pipe.transformer, x_t, t, cond, torch.ones(2))
        v_u = flux_fit.velocity(family, pipe, pipe.transformer, x_t, t, uncond.expand(2), torch.ones(2))
    config = pipe.transformer.config
    # Rows batched two ways: sums over the widest inner dimension (the MLP's, 4 x width) differ in order,
    # and each block can carry the difference on (gain: the blocks' count).
    atol = path_atol(v_c.abs().max(), terms=4 * config.num_attention_heads * config.attention_head_dim,
                     gain=config.num_layers + config.num_single_layers)
    assert loss.sqrt() <= atol
    assert (v_c - v_u).pow(2).mean().sqrt() > 100 * atol  # the check above could tell them apart


@needs_pocket
def test_trainer_writes_a_folder_that_flux_pipeline_loads(tiny_flux):
    from diffusers import FluxPipeline

    from trce_audit.hashing import hash_tree
    from trce_audit.models.families import family_name
    from trce_audit.models.folder import world_of
    from trce_audit.pocket.flux_models import STORED_BYTES_LIMIT

    out = tiny_flux
    record = json.loads((out / "pocket_training.json").read_text())
    assert record["t5_steps"] == record["flow_steps"] == record["distill_steps"] == 2
    assert all(torch.isfinite(torch.tensor(record[k])) for k in ("flow_loss_avg", "distill_loss_avg", "t5_final_loss"))
    assert record["weights_sha256"] == hash_tree(out, (".safetensors",))
    assert family_name(out) == "flux" and world_of(out) == "pocket"
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) <= STORED_BYTES_LIMIT
    pipe = FluxPipeline.from_pretrained(out, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae.config.shift_factor == pytest.approx(record["vae_shift_factor"])
    image = sample(pipe)
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()


def test_fit_schedule_follows_steps_whatever_the_clock_reads(monkeypatch, tmp_path):
    """A clock that leaps to 90% of the deadline after the loop starts (a loaded machine) leaves the learning
    rates and the weights as they are under the real clock: only a deadline passed stops the fit."""
    from trce_audit.pocket import flux_fit

    def fit_once():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        batches = iter(lambda: (torch.ones(2, 3), None), None)  # endless identical batches
        with open(tmp_path / "fit.log", "w") as fh:
            _, stats = flux_fit.fit(model, batches, lambda m, x0, cond: m(x0).pow(2).mean(), 8, flux_fit.time.time() + 1000,
                                    0.1, fh, "t", warmup=1, log_every=1)
        lrs = [line.split(" lr ")[1].split()[0] for line in (tmp_path / "fit.log").read_text().splitlines() if " lr " in line]
        return torch.cat([p.detach().flatten() for p in model.parameters()]), lrs, stats

    weights, lrs, stats = fit_once()
    real, calls = flux_fit.time.time, []

    def leaping():
        calls.append(1)
        return real() + (0 if len(calls) <= 2 else 900)  # the deadline and the fit's start read the true time

    monkeypatch.setattr(flux_fit.time, "time", leaping)
    leaped_weights, leaped_lrs, leaped = fit_once()
    monkeypatch.undo()
    assert stats["t_steps"] == leaped["t_steps"] == 8 and not leaped["t_stopped_by_clock"]
    assert leaped_lrs == lrs and len(set(lrs)) > 2  # the cosine moved, by steps alone
    assert torch.equal(leaped_weights, weights)


@needs_pocket
def test_trainer_follows_steps_not_the_clock(tiny_flux, tmp_path):
    """The recipe is steps: the same arguments give the same weights whatever the wall clock did (the
    learning rate never reads it), and a --max-minutes guard that stops phases says which, in the record."""
    from trce_audit.pocket.train_flux import main

    record = json.loads((tiny_flux / "pocket_training.json").read_text())
    assert record["stopped_by_clock"] == [] and not record["flow_stopped_by_clock"]
    again = tmp_path / "again"
    args = ["--seed", "0", "--max-steps", "2", "--batch", "4", "--pool-batches", "1", "--stat-batches", "1", "--log-every", "1"]
    with torch.random.fork_rng():
        main(["--out", str(again), *args])
    assert json.loads((again / "pocket_training.json").read_text())["weights_sha256"] == record["weights_sha256"]
    guarded = tmp_path / "guarded"
    with torch.random.fork_rng():
        main(["--out", str(guarded), *args, "--max-minutes", "0.001"])  # 0.06 s: every phase past its deadline
    stopped = json.loads((guarded / "pocket_training.json").read_text())
    assert stopped["stopped_by_clock"] == ["t5", "flow", "distill"] and stopped["flow_steps"] == 0
    assert "not the recipe's model" in (tmp_path / "guarded.train.log").read_text()


def test_package_stays_under_the_wheel_budget_with_both_pocket_models():
    """Every file under trce_audit/ bounds what the wheel holds (package-data selects among them; zip stores a
    file as is when deflating would not shrink it, plus two headers and a RECORD line naming it); pocket-flux
    counts at its budget until it is shipped."""
    root = Path(trce_audit.__file__).parent
    files = [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    size = sum(p.stat().st_size + 256 + 3 * len(p.relative_to(root.parent).as_posix()) for p in files)
    if not (flux_models.FLUX_MODEL_DIR / "model_index.json").exists():
        size += flux_models.STORED_BYTES_LIMIT
    assert size < WHEEL_LIMIT, size


def test_trainer_refuses_a_bad_device_or_a_missing_pocket_model_with_exit_2(monkeypatch, tmp_path, capsys):
    from trce_audit.pocket import train_flux

    cases = [(["--device", "gpu0"], "is no torch device"), (["--device", "cuda"], "sees no CUDA device")]
    for argv, message in cases[: 1 if torch.cuda.is_available() else 2]:
        with pytest.raises(SystemExit) as exc:
            train_flux.parse(["--out", str(tmp_path / "out"), *argv])
        assert exc.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1]
    monkeypatch.setattr(train_flux, "MODEL_DIR", tmp_path / "absent")
    with pytest.raises(SystemExit) as exc:
        train_flux.parse(["--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and "pocket SD model is missing" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_pocket_flux_absent_is_one_line_naming_the_training_command(cli, monkeypatch, tmp_path):
    install_flux(monkeypatch, tmp_path / "not-installed")
    code, _, err = cli("erase", "uce", "--concept", "cross", "--model", "pocket-flux", "--device", "cpu")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "pocket-flux" in err and "python -m trce_audit.pocket.train_flux" in err


@needs_pocket
def test_only_a_pocket_world_flux_folder_declares_its_own_size_and_t5_length(tiny_flux, tmp_path):
    """The configs alone decide it (no weights): pocket-flux's 32 px and 48 tokens; the same folder outside
    the pocket world keeps FLUX.1's defaults (128 latent rows, the pipeline's T5 length)."""
    from trce_audit.generation.settings import GenerationSettings
    from trce_audit.models.families import FLUX_SAMPLE_SIZE, default_size, own_sampling
    from trce_audit.models.folder import write_marker

    folder = tmp_path / "configs"
    for name in ("model_index.json", "trce_audit.json", "vae/config.json", "tokenizer_2/tokenizer_config.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_flux / name, folder / name)
    assert own_sampling(folder) == (flux_models.IMAGE_SIZE, flux_models.T5_LENGTH) == (32, 48)
    settings = GenerationSettings().resolved(folder)
    assert (settings.height, settings.width, settings.max_sequence_length) == (32, 32, 48)
    assert GenerationSettings(max_sequence_length=64).resolved(folder).max_sequence_length == 64  # given wins
    write_marker(folder, {"world": "sd"})
    assert own_sampling(folder) is None and default_size(folder) == FLUX_SAMPLE_SIZE * 4  # the VAE's factor 4
    assert GenerationSettings().resolved(folder).max_sequence_length is None


@needs_pocket
def test_loaded_pocket_flux_and_trce_stage2_use_its_native_latents(tiny_flux):
    from trce_audit.erasers.trce.config import TRCEConfig
    from trce_audit.erasers.trce.trajectories import stage2_shape
    from trce_audit.erasers.uce_families import flux_t5_length
    from trce_audit.models.families import load_family
    from trce_audit.models.resolve import load_pipeline, resolve_model

    family, pipe = load_family("flux"), load_pipeline(resolve_model(str(tiny_flux)))
    assert family.native_size(pipe) == 32 and flux_t5_length(pipe) == 48
    assert family.encode(pipe, [PROMPT], "cpu", torch.float32).states.shape[1] == 48
    config = TRCEConfig.for_family("flux", "pocket", "cross")
    assert config.latent_size is None and TRCEConfig.for_family("flux", "sd").latent_size == 64
    assert config.as_dict() == TRCEConfig.for_world("pocket").as_dict()  # the SD pocket preset, unchanged
    assert stage2_shape(pipe, family, config) == (4, 8, 8)


@needs_pocket
def test_eval_of_pocket_flux_records_32px_images_at_t5_length_48(cli, store, monkeypatch, tiny_flux):
    from PIL import Image

    install_flux(monkeypatch, tiny_flux)
    code, out, err = cli("eval", "--model", "pocket-flux", "--prompts", "pocket-explicit", "--limit", "2",
                         "--metric", "pocket-heldout", "--device", "cpu")
    assert code == 0, err
    [run] = store.list_runs(kind="generate")
    assert (run.config["height"], run.config["width"], run.config["max_sequence_length"]) == (32, 32, 48)
    images = store.generated_images(run.id)
    assert len(images) == 2 and all(Image.open(image.image_path).size == (32, 32) for image in images)
    assert all(image.prompt.guidance == 7.5 for image in images)  # embedded: inside the distilled range
    assert flux_models.GUIDANCE_RANGE[0] <= 7.5 <= flux_models.GUIDANCE_RANGE[1]


@needs_pocket
@pytest.mark.parametrize("eraser, extra", [("uce", ()), ("trce", ("--stages", "1", "--set", "n_captions=200"))])
def test_erasers_run_on_pocket_flux_and_keep_its_sampling(cli, store, tiny_flux, eraser, extra):
    from trce_audit.models.families import own_sampling

    code, out, err = cli("erase", eraser, "--concept", "cross", "--model", str(tiny_flux), "--device", "cpu", *extra)
    assert code == 0, err
    [artefact] = store.list_artefacts()
    assert artefact.meta["world"] == "pocket" and own_sampling(Path(artefact.path)) == (32, 48)
    if eraser == "trce":
        assert artefact.meta["stats"]["stage1"]["t5_length"] == 48


# The quality bars, on the shipped weights, drawn as the SD pocket model's bars are
# (tests/test_pocket_scorers.py: 64 rows, each at its own seed and guidance, 30 steps, the held-out scorer).
@pytest.fixture(scope="module")
def flux_pipe():
    from trce_audit.models.resolve import load_pipeline, resolve_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_pipeline(resolve_model("pocket-flux"))
    finally:
        torch.set_num_threads(threads)


@needs_flux
def test_random_weight_transformer_draws_no_crosses(flux_pipe):
    from trce_audit.pocket import geometry, world
    from trce_audit.pocket.flux_builders import build_transformer

    trained = flux_pipe.transformer
    with torch.random.fork_rng():  # the draw's seed stays out of the global generator other tests share
        torch.manual_seed(1234)
        flux_pipe.transformer = build_transformer(zero_init=False).eval()  # with the trained T5, CLIP and VAE
    try:
        images = draw_set(flux_pipe, "pocket-explicit")
    finally:
        flux_pipe.transformer = trained
    heldout = (geometry.score(images)[:, world.KINDS.index("cross")] > 0.5).float().mean().item()
    assert heldout <= 0.02, heldout


@needs_flux
def test_base_model_draws_the_target_and_the_preserve_concepts(flux_pipe):
    from trce_audit.pocket import geometry, world
    from trce_audit.pocket.prompts import pocket_prompt_set

    explicit = draw_set(flux_pipe, "pocket-explicit")
    target = (geometry.score(explicit)[:, world.KINDS.index("cross")] > 0.5).float().mean().item()
    images = draw_set(flux_pipe, "pocket-preserve")  # the set's first rows, as many as drawn
    requested = torch.tensor([world.KINDS.index(row["meta"]["concept"]) for row in pocket_prompt_set("pocket-preserve")[: len(images)]])
    preserve = geometry.score(images)[torch.arange(len(images)), requested] > 0.5
    assert target >= 0.85 and preserve.float().mean().item() >= 0.80, (target, preserve.float().mean().item())
