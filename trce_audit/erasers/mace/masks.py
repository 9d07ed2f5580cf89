"""Images of a concept and its masks for MACE's LoRA training.

The reference (``data_preparation.py``, ``inference.py``) draws 8 images per concept with the original
model ("a photo of the {concept}", DPM-Solver, 30 steps, guidance 7.5) and segments them with
Grounded-SAM prompted with the concept's name (the whole image when nothing is detected). Here:
- a user folder in the reference's layout (``<dir>/<concept>/`` images, ``<dir>/<concept> mask/`` masks,
  paired in sorted order) replaces both;
- in the pocket world, the world's own segmentation (``pocket/segment.py``) and shape fit
  (``pocket/fitting.py``) pick the components that are the concept's shape;
- on SD without a folder, the concept tokens' cross-attention during sampling, averaged over layers,
  heads and steps and thresholded at a fraction of its maximum, is the mask (docs/fidelity.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DPMSolverMultistepScheduler
from PIL import Image

from ...errors import ConfigError
from ...pocket.world import KINDS
from ...pocket.fitting import fit_components
from ...pocket.geometry import PARAMS
from ...pocket.segment import alpha_maps, background, components, foreground
from .closed_form import concept_positions
from .lora import ProbedCrossAttention, install, restore

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def _read(path: Path, mode: str, size: int) -> torch.Tensor:
    image = Image.open(path).convert(mode).resize((size, size), Image.BILINEAR if mode == "RGB" else Image.NEAREST)
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    return array.permute(2, 0, 1) if array.ndim == 3 else array[None]


def read_concept_folder(root: str | Path, phrase: str, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images [N,3,S,S], masks [N,1,S,S] or None when there is no mask folder) in [0,1]."""
    name = phrase.replace("-", " ")
    folder, mask_folder = Path(root) / name, Path(root) / f"{name} mask"
    if not folder.is_dir():
        raise ConfigError(f"mace data_dir has no image folder {folder} for concept {phrase!r}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"mace image folder {folder} holds no images")
    images = torch.stack([_read(p, "RGB", size) for p in files])
    if not mask_folder.is_dir():
        return images, None
    mask_files = sorted(p for p in mask_folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(mask_files) != len(files):
        raise ConfigError(f"mace mask folder {mask_folder} holds {len(mask_files)} masks for {len(files)} images")
    return images, torch.stack([_read(p, "L", size) for p in mask_files])


@torch.no_grad()
def draw_concept_images(pipe, prompt: str, count: int, *, steps: int, guidance: float, size: int, seed: int,
                        positions: torch.Tensor | None = None):
    """``count`` images [N,3,S,S] in [0,1] with DPM-Solver, one seed per image; with ``positions``
    also the mean cross-attention map [N,1,S,S] of those token positions (conditional half only)."""
    maps: list[torch.Tensor] = []
    latent = size // pipe.vae_scale_factor
    halves = 2 if guidance > 1 else 1  # with guidance the pipeline batches (unconditional, conditional)

    def observe(probs):  # [halves x N x heads, HW, 77] -> the conditional half's maps [N,1,h,w] on the latent grid
        cond = probs.view(halves, count, -1, *probs.shape[1:])[-1][..., positions].sum(-1).mean(1)
        side = int(round(cond.shape[1] ** 0.5))
        maps.append(F.interpolate(cond.view(count, 1, side, side), size=(latent, latent), mode="bilinear"))

    scheduler = pipe.scheduler
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(scheduler.config)
    previous = install(pipe.unet, lambda name, m: _observer(observe)) if positions is not None else None
    try:
        generators = [torch.Generator().manual_seed(seed + i) for i in range(count)]
        images = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                      num_images_per_prompt=count, generator=generators, output_type="pt").images.float().cpu()
    finally:
        pipe.scheduler = scheduler
        if previous is not None:
            restore(pipe.unet, previous)
    if positions is None:
        return images, None
    return images, F.interpolate(torch.stack(maps).mean(0), size=(size, size), mode="bilinear").cpu()


def _observer(observe):
    return ProbedCrossAttention(observe)


def attention_masks(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binary masks [N,1,S,S]: pixels whose attention is at least ``threshold`` of the image's maximum."""
    peak = maps.flatten(1).max(1).values.clamp(min=1e-12).view(-1, 1, 1, 1)
    return (maps / peak >= threshold).float()


def pocket_masks(images: torch.Tensor, kind: str) -> tuple[torch.Tensor, int]:
    """Masks [N,1,H,W] of the components whose best shape fit is ``kind`` (score > 0.5); an image where
    none is gets the whole image, as Grounded-SAM's helper does when it detects nothing. Also returns
    how many images fell back to the whole image."""
    if kind not in KINDS:
        raise ConfigError(f"pocket segmentation knows the kinds {', '.join(KINDS)}, not {kind!r}")
    bg, _ = background(images)
    dist = foreground(images, bg)
    labels = components(images, dist > PARAMS["fg"], bg, PARAMS)
    index, alpha = alpha_maps(images, bg, dist, labels, PARAMS)
    masks = torch.zeros(images.shape[0], 1, *images.shape[2:])
    if len(index):
        scores = fit_components(alpha, PARAMS)[:, KINDS.index(kind)]
        for b, a, s in zip(index.tolist(), alpha, scores.tolist()):
            if s > 0.5:
                masks[b, 0] = torch.maximum(masks[b, 0], (a > 0.5).float())
    empty = masks.flatten(1).sum(1) == 0
    masks[empty] = 1.0
    return masks, int(empty.sum())


def concept_data(pipe, config, concept, phrase: str, index: int, world: str):
    """(images, masks or None, stats) for MACE unit ``index``: read from ``config.data_dir`` or drawn, then masked."""
    size = config.image_size or int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    mode, maps = config.masks, None
    if mode == "auto":
        mode = "folder" if config.data_dir else ("segmentation" if world == "pocket" else "attention")
    if mode == "segmentation" and world != "pocket":
        raise ConfigError("mace masks=segmentation needs the pocket world; on SD use a data_dir, attention or none")
    if config.data_dir:
        if mode == "attention":
            raise ConfigError("mace masks=attention derives masks while drawing; it cannot use a data_dir's images")
        images, masks = read_concept_folder(config.data_dir, phrase, size)
        info = {"images": len(images), "source": str(config.data_dir)}
        if mode == "folder" and masks is None:
            mode = "none"  # the reference's style branch: no mask folder, every pixel counts
    else:
        prompt = config.image_template.format(phrase)
        positions = concept_positions(pipe.tokenizer, prompt, phrase, use_pooler=False) if mode == "attention" else None
        images, maps = draw_concept_images(
            pipe, prompt, config.n_images, steps=config.image_steps, guidance=config.image_guidance, size=size,
            seed=config.seed + 1000 * index, positions=positions,
        )
        info = {"images": len(images), "prompt": prompt}
    info["masks"] = mode
    if mode == "none":
        return images, None, info
    if mode == "segmentation":
        masks, info["whole_image_masks"] = pocket_masks(images, concept.label or concept.name)
    elif mode == "attention":
        masks = attention_masks(maps, config.attention_threshold)
        empty = masks.flatten(1).sum(1) == 0  # no attention to the phrase: the whole image, as get_mask does
        masks[empty] = 1.0
        info["whole_image_masks"] = int(empty.sum())
    info["mask_coverage"] = round(float(masks.mean()), 4)
    return images, masks, info
