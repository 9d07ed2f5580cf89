"""The shipped pocket model and detector (fast CPU checks)."""

import pytest
import torch

from trce_audit.pocket import world
from trce_audit.pocket.models import MODEL_DIR
from trce_audit.pocket.detector import DETECTOR_PATH

needs_model = pytest.mark.skipif(not (MODEL_DIR / "model_index.json").exists(), reason="pocket weights not built")
needs_detector = pytest.mark.skipif(not DETECTOR_PATH.exists(), reason="pocket detector not built")


@needs_model
def test_tokenizer_places_eot_like_sd():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(MODEL_DIR / "tokenizer"))
    assert len(tok) == 49408
    assert tok.pad_token == "<|endoftext|>" and tok.model_max_length == 77
    for text in ["a red cross on a black background", "a small shape made of two bars meeting at right angles", ""]:
        bpe = tok.tokenize(text)
        ids = tok(text, padding="max_length", max_length=77, truncation=True).input_ids
        assert len(ids) == 77
        assert ids[0] == tok.bos_token_id == 49406
        assert ids.index(tok.eos_token_id) == len(bpe) + 1
        assert all(i == 49407 for i in ids[len(bpe) + 1:])
    assert tok.tokenize("a red cross") == ["a</w>", "red</w>", "cross</w>"]


@needs_model
def test_pipeline_loads_and_generates():
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(2)
    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL_DIR), safety_checker=None,
                                                   requires_safety_checker=False, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32
    names = [n for n, _ in pipe.unet.named_modules()]
    assert any(n.endswith("attn2.to_k") for n in names) and any(n.endswith("attn1.to_q") for n in names)
    out = pipe("a red cross", num_inference_steps=2, guidance_scale=7.5, height=32, width=32,
               generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert out.shape == (1, 3, 32, 32)
    assert torch.isfinite(out).all()


@needs_detector
def test_detector_accuracy_on_fresh_renders():
    from trce_audit.pocket.detector import CONCEPT_NAMES, detect, detector_info

    torch.set_num_threads(2)
    scenes = world.sample_scenes(400, seed=98765)
    probs = detect(world.render(scenes))
    assert probs.shape == (400, len(CONCEPT_NAMES))
    y = world.labels(scenes)["kinds"]
    acc = ((probs > 0.5).float() == y).float().mean(0)
    assert float(acc.min()) >= 0.98, dict(zip(CONCEPT_NAMES, acc.tolist()))
    info = detector_info()
    assert len(info["sha256"]) == 64 and info["concepts"] == list(CONCEPT_NAMES)


@needs_detector
def test_detector_accepts_pil_and_other_sizes():
    from PIL import Image

    from trce_audit.pocket.detector import detect

    img = world.render(world.sample_scenes(2, seed=1))
    pil = [Image.fromarray((im.permute(1, 2, 0).numpy() * 255).astype("uint8")).resize((64, 64)) for im in img]
    p1, p2 = detect(img), detect(pil)
    assert p2.shape == p1.shape
    assert ((p1 > 0.5) == (p2 > 0.5)).float().mean() > 0.9
