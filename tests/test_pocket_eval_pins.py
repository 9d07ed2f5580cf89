"""Pocket eval images, pinned before their sampler moved off the diffusers pipeline call (plan 25, P11).

The pocket eval numbers in docs/pocket-world.md were measured on these images, so the sampler they come
from (now ``generation.engine.BatchSampler``) may change only if not one bit of them does. Two checks:
the sha256 of the old ``pocket.evaluate.generate`` output for 16 pocket-explicit and 16 pocket-general
rows at two guidance values (split by guidance inside one chunk), and, on any machine, bit equality with
diffusers' own ``StableDiffusionPipeline.__call__`` run as the old ``generate`` ran it. The literals were
computed with the old code on one thread; a CPU whose kernels round otherwise (AVX2 and AVX-512 do, and
so does another thread count: measured, two threads change the uint8 bytes too) cannot reproduce them,
so there the literal check is skipped and the bit equality with diffusers still holds the line.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from trce_audit.models.resolve import load_pipeline, resolve_model
from trce_audit.pocket.models import MODEL_DIR
from trce_audit.pocket.prompts import pocket_prompt_set
from trce_audit.pocket_eval.evaluate import generate

needs_model = pytest.mark.skipif(not (MODEL_DIR / "model_index.json").exists(), reason="pocket weights not built")

FLOAT32_SHA256 = "4eea7a12b433e75e8d54c129ed479efc9775ceb0f0a1a89475a9049a7832cb58"
UINT8_SHA256 = "1cbcbbb86b5e4fcccae10b83fee0858ba283ade374fd44df20edc9201a599fa4"


def _rows() -> list[dict]:
    rows = pocket_prompt_set("pocket-explicit")[:16] + pocket_prompt_set("pocket-general")[:16]
    for i, row in enumerate(rows):
        if i % 3 == 1:  # a second guidance value, interleaved so the chunk is split and regrouped
            row["guidance"] = 3.0
    return rows


@torch.no_grad()
def _diffusers_reference(pipe, rows: list[dict], steps: int, batch_size: int = 64) -> torch.Tensor:
    """The pre-move ``pocket.evaluate.generate``, kept here as the oracle: diffusers' pipeline call."""
    outs = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        gs = {r["guidance"] for r in chunk}
        if len(gs) > 1:
            for g in sorted(gs):
                outs.append(_diffusers_reference(pipe, [r for r in chunk if r["guidance"] == g], steps, batch_size))
            continue
        gens = [torch.Generator("cpu").manual_seed(int(r["seed"])) for r in chunk]
        shape = (1, pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
        lat = torch.cat([torch.randn(shape, generator=g) for g in gens]).to(pipe.device, pipe.unet.dtype)
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        img = pipe([r["text"] for r in chunk], num_inference_steps=steps, guidance_scale=gs.pop(),
                   height=size, width=size, latents=lat, output_type="pt").images
        outs.append(img.float().cpu())
    return torch.cat(outs)


def _sha(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def images():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the thread count decides how reductions split: part of the bytes
    try:
        pipe = load_pipeline(resolve_model("pocket"))
        rows = _rows()
        yield generate(pipe, rows, steps=30), _diffusers_reference(pipe, rows, steps=30)
    finally:
        torch.set_num_threads(threads)


@needs_model
def test_generate_is_the_diffusers_pipeline_bit_for_bit(images):
    found, reference = images
    assert found.dtype == torch.float32 and found.shape == (32, 3, 32, 32)
    assert torch.equal(found, reference)


@needs_model
def test_generate_bytes_are_pinned(images):
    found, reference = images
    if _sha(reference) != FLOAT32_SHA256:
        pytest.skip("this CPU's kernels round otherwise than the pinning machine's (bit equality still checked)")
    assert _sha(found) == FLOAT32_SHA256
    assert _sha((found * 255).round().to(torch.uint8)) == UINT8_SHA256
