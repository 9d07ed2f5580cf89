"""pocket-flux, the pocket world's FLUX-architecture model: its builder, its trainer, its size budget."""

import json

import pytest
import torch

from tolerance import path_atol
from trce_audit.pocket.models import MODEL_DIR

needs_pocket = pytest.mark.skipif(not (MODEL_DIR / "model_index.json").exists(), reason="pocket weights not built")
PROMPT = "a picture of a small red cross at the top on black"


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
def test_trainer_writes_a_folder_that_flux_pipeline_loads(tmp_path):
    from diffusers import FluxPipeline

    from trce_audit.hashing import hash_tree
    from trce_audit.models.families import family_name
    from trce_audit.models.folder import world_of
    from trce_audit.pocket.flux_models import STORED_BYTES_LIMIT
    from trce_audit.pocket.train_flux import main

    out = tmp_path / "pocket-flux"
    with torch.random.fork_rng():
        main(["--out", str(out), "--seed", "0", "--max-steps", "2", "--batch", "4", "--pool-batches", "1",
              "--stat-batches", "1", "--log-every", "1"])
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
