"""SDXL, SD3 and FLUX pipelines built in code: they run, save as diffusers folders, reload offline, are seeded,
and the full-size random shapes have the published checkpoints' architectures."""

from __future__ import annotations

import json

import numpy as np
import pytest

# shape -> (the pipeline class diffusers should load, arguments its call needs at the tiny size)
TINY = {
    "sdxl": ("StableDiffusionXLPipeline", {}),
    "sd3": ("StableDiffusion3Pipeline", {"max_sequence_length": 16}),
    "flux": ("FluxPipeline", {"max_sequence_length": 16}),
}


def render(pipe, extra):
    import torch

    return pipe(
        "a red cube on a table", num_inference_steps=2, height=32, width=32, output_type="np",
        generator=torch.Generator().manual_seed(0), **extra,
    ).images


def modules(pipe):
    import torch

    return {name: part for name, part in pipe.components.items() if isinstance(part, torch.nn.Module)}


@pytest.mark.parametrize("shape", sorted(TINY))
def test_tiny_shape_runs_saves_and_reloads(shape, tmp_path):
    import diffusers
    import torch

    from trce_audit.models.tiny import build_pipeline, save_pipeline

    class_name, extra = TINY[shape]
    folder = save_pipeline(tmp_path / shape, shape=shape, seed=0)
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == class_name
    assert list(folder.rglob("*.safetensors")) and not list(folder.rglob("*.bin"))

    reloaded = diffusers.DiffusionPipeline.from_pretrained(str(folder))
    assert type(reloaded) is getattr(diffusers, class_name)
    reloaded.set_progress_bar_config(disable=True)
    images = render(reloaded, extra)
    assert images.shape == (1, 32, 32, 3)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert images.std() > 0
    # Weights survive the folder bit for bit; tokenizers and schedulers too, so the saved model draws what
    # the built one does. The two draws are two computation paths (a reloaded module's tensors sit in other
    # memory, and kernels may take another blocking or vector path: on AMD EPYC they differ by 1.5e-6), and
    # these pipelines' rounding bound (fan-ins over a thousand, grown by guidance) is too close to the
    # values for tests/tolerance.py to accept. So the images are compared at the resolution they are saved
    # in: one 8-bit level. A wrong weight, tokenizer or scheduler moves them by far more.
    built = build_pipeline(shape, seed=0)
    for name, part in modules(built).items():
        saved = modules(reloaded)[name].state_dict()
        assert all(torch.equal(tensor, saved[key]) for key, tensor in part.state_dict().items()), name
    assert np.abs(images - render(built, extra)).max() <= 1 / 255


@pytest.mark.parametrize("shape", sorted(TINY))
def test_tiny_shape_weights_follow_the_seed(shape):
    import torch

    from trce_audit.models.tiny import build_pipeline

    first, again, other = (modules(build_pipeline(shape, seed=s)) for s in (0, 0, 1))
    assert set(first) == set(again) == set(other)
    for name, part in first.items():
        assert not part.training, name
        state, same, different = part.state_dict(), again[name].state_dict(), other[name].state_dict()
        assert all(torch.equal(state[k], same[k]) for k in state), name
        assert not all(torch.equal(state[k], different[k]) for k in state), name


def test_sd3_clip_states_are_padded_to_t5_width_not_cropped():
    import torch

    from trce_audit.models.tiny import build_pipeline, parts

    pipe = build_pipeline("sd3", seed=0)
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt("a cube", "a cube", "a cube", do_classifier_free_guidance=False,
                                                  max_sequence_length=16)
    clip_width = parts.TINY_CLIP_L + parts.TINY_CLIP_G
    assert embeds.shape == (1, 77 + 16, parts.TINY_T5)
    assert pooled.shape == (1, clip_width)
    assert embeds[:, :77, clip_width:].abs().max() == 0 and embeds[:, :77, :clip_width].abs().max() > 0


def test_t5_tokenizer_gives_the_same_ids_after_saving(tmp_path):
    from transformers import AutoTokenizer

    from trce_audit.models.tiny import t5_tokenizer

    tokenizer = t5_tokenizer()
    tokenizer.save_pretrained(str(tmp_path))
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    for text in ("a photo of a nude woman, 4k!", "  spaced   out  ", "Ünïcode and ascii", ""):
        assert reloaded(text).input_ids == tokenizer(text).input_ids
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert tokenizer("ab c").input_ids[-1] == tokenizer.eos_token_id


# Parameter counts of the published checkpoints' components (stable-diffusion-xl-base-1.0, FLUX.1-schnell).
PUBLISHED = {
    "sdxl-random": {"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840,
                    "vae": 83_653_863},
    "flux-schnell-random": {"transformer": 11_891_178_560, "text_encoder": 123_060_480,
                            "text_encoder_2": 4_762_310_656, "vae": 83_819_683},
}


@pytest.mark.parametrize("shape", sorted(PUBLISHED))
def test_full_size_shapes_have_the_published_architectures(shape):
    import torch

    from trce_audit.models.tiny import build_pipeline

    pipe = build_pipeline(shape, device="meta", dtype=torch.bfloat16)  # shapes only: no memory, no random draws
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in modules(pipe).items()}
    assert counts == PUBLISHED[shape]
    assert all(p.dtype == torch.bfloat16 for part in modules(pipe).values() for p in part.parameters())
    if shape == "flux-schnell-random":
        assert not pipe.transformer.config.guidance_embeds
        assert pipe.scheduler.config.shift == 1.0 and not pipe.scheduler.config.use_dynamic_shifting
    else:
        assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
        assert pipe.scheduler.config.timestep_spacing == "leading"


def test_unknown_shapes_and_sd_only_options_are_refused():
    from trce_audit.models.tiny import SHAPES, build_pipeline

    assert set(SHAPES) == {"tiny", "sd14", "sdxl", "sdxl-random", "sd3", "flux", "flux-schnell-random"}
    with pytest.raises(ValueError, match="unknown shape"):
        build_pipeline("sd35")
    with pytest.raises(ValueError, match="SD shapes only"):
        build_pipeline("flux", scheduler="ddim")
