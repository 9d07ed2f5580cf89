"""The model-family seam (models/families): each family is read from its folder, and the batched engine
samples every family as that family's own diffusers pipeline does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tolerance import assert_paths_agree
from trce_audit.errors import ConfigError
from trce_audit.generation.engine import BatchSampler
from trce_audit.generation.settings import GenerationSettings
from trce_audit.models import families
from trce_audit.models.tiny import build_pipeline, save_pipeline
from trce_audit.records import PromptRow

FAMILY_OF_SHAPE = {"tiny": "sd", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}
ROWS = [PromptRow("a red cross on a wall", 3, 5.0), PromptRow("a blue circle", 4, 1.0), PromptRow("", 5, 3.5)]
STEPS, SIZE = 3, 32


@pytest.fixture(scope="module", params=list(FAMILY_OF_SHAPE))
def shape(request):
    return request.param


@pytest.fixture(scope="module")
def pipe64(shape):
    # float64 so that the bound below is far below the values (a float32 bound over these steps is not)
    pipe = build_pipeline(shape, seed=0).to(torch.float64)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_family_is_read_from_model_index(shape, tmp_path):
    folder = save_pipeline(tmp_path / shape, shape=shape)
    assert families.family_name(folder) == FAMILY_OF_SHAPE[shape]


def test_unknown_pipeline_class_is_one_line_naming_the_supported(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))
    with pytest.raises(ConfigError) as err:
        families.family_name(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "KandinskyV22Pipeline" in message
    assert all(name in message for name in ("sd (", "sdxl", "sd3", "flux"))


def test_engine_latents_are_the_pipelines_own(shape, pipe64):
    """Batched, per-row seeds and guidance: each row's final latents equal the pipeline run on that row alone."""
    settings = GenerationSettings(steps=STEPS, height=SIZE, width=SIZE, dtype="fp64", device="cpu").validate()
    sampler = BatchSampler(pipe64, settings)
    ours = sampler.denoise(ROWS)
    for i, row in enumerate(ROWS):
        # The engine draws every row's noise in float32 whatever the dtype (the same noise on every
        # device and precision); the pipeline would draw float64 noise here, so it is handed the same draw.
        noise = sampler.initial_latents([row], sampler.generators([row]), 1.0)
        reference = pipe64(
            row.text, num_inference_steps=STEPS, height=SIZE, width=SIZE, guidance_scale=row.guidance,
            latents=sampler.family.pack(noise), output_type="latent",
        ).images
        # batched vs one row: the same sums in another order. The longest accumulation is a norm over
        # a 32x32 latent grid's channels (<= 1024 x 16 terms); each step's guidance can grow a
        # difference by the guidance scale.
        assert_paths_agree(ours[i : i + 1], reference, terms=1024 * 16, gain=STEPS * max(row.guidance, 1.0))


def test_rows_do_not_leak_into_each_other(shape, pipe64):
    settings = GenerationSettings(steps=STEPS, height=SIZE, width=SIZE, dtype="fp64", device="cpu").validate()
    sampler = BatchSampler(pipe64, settings)
    batched = sampler.denoise(ROWS)
    alone = sampler.denoise(ROWS[1:2])
    assert_paths_agree(batched[1:2], alone, terms=1024 * 16, gain=STEPS)
    assert not torch.allclose(batched[0], batched[1])  # different prompts and seeds give different latents


def test_reading_a_family_imports_no_torch(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    code = (
        "import sys; from trce_audit.models import families; "
        f"print(families.family_name({str(folder)!r}), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["flux", "False"]


def test_each_family_names_the_modules_that_read_text(shape, pipe64):
    """What an eraser edits: cross-attention K/V in UNets; the caption embedder, the joint blocks' text
    K/V and the pooled-text projection in MMDiTs. Every name is a Linear of the denoiser."""
    import torch

    family = families.load_family(FAMILY_OF_SHAPE[shape])
    denoiser = getattr(pipe64, family.denoiser)
    names = family.text_projections(denoiser)
    modules = dict(denoiser.named_modules())
    assert names and all(isinstance(modules[name], torch.nn.Linear) for name in names)
    if family.denoiser == "unet":
        assert all(name.endswith(("attn2.to_k", "attn2.to_v")) for name in names)
    else:
        assert "context_embedder" in names and "time_text_embed.text_embedder.linear_1" in names
        assert any(name.endswith("attn.add_k_proj") for name in names) and any(name.endswith("attn.add_v_proj") for name in names)
