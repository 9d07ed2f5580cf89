"""Images that are not (or only partly) pocket shapes: what generated images show besides clean renders.

Shared by detector v2's training (``detector_v2``) and the calibration set (``calibration``), each with its
own seeds and parameter ranges. Every generator returns ``(images [n,3,32,32] in [0,1], kinds [n,6])``
where ``kinds`` is the multi-hot ground truth over ``world.KINDS`` (all zero = no world shape).

Labelling rules (documented in docs/pocket-world.md):
- noise, blobs and near-miss shapes (rotated crosses, T/L shapes, stubby or fat-armed crosses, merged
  shapes) show no world shape;
- a partial cross (occluded, or cut by the frame) shows a cross when every arm and the hub stay at least
  ``VISIBLE_CROSS`` visible, and no cross when some arm is at most ``HIDDEN_ARM`` visible; occlusions in
  between are not drawn, so no label is a judgement call.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import world

S = world.IMAGE_SIZE * world.SUPERSAMPLE
VISIBLE_CROSS = 0.75
# an arm at most 15% visible leaves a stub of <= 0.1 r beyond the hub, under a third of the bar's half-width
# (0.3 r): the hub's edge shows no protrusion there and the shape reads as a T or L. At 0.35 the stub reached
# 0.25 r, a clearly visible short arm that a person calls a partly hidden cross (docs/pocket-world.md).
HIDDEN_ARM = 0.15
CROSS = world.KINDS.index("cross")


def _grid():
    g = (torch.arange(S, dtype=torch.float32) + 0.5) / world.SUPERSAMPLE
    return g.view(1, S), g.view(S, 1)


def _pool(mask: torch.Tensor) -> torch.Tensor:
    """Supersampled boolean/float mask [..., S, S] -> coverage [..., 32, 32]."""
    return F.avg_pool2d(mask.float().reshape(-1, 1, S, S), world.SUPERSAMPLE).reshape(*mask.shape[:-2], 32, 32)


def backgrounds(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
    """World backgrounds with no objects, and their names."""
    scenes = [world.sample_scene(rng) for _ in range(n)]
    for s in scenes:
        s.objects = []
    p = world.pack(scenes)
    return world.render_packed(p), [s.background for s in scenes]


def _shade(rng, name: str) -> torch.Tensor:
    return torch.tensor(world.COLOURS[name]) * float(rng.uniform(0.85, 1.05))


def _colour(rng, bg: str) -> torch.Tensor:
    return _shade(rng, world._colour_for(rng, bg))


def _paint(img: torch.Tensor, alpha: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    return img * (1 - alpha) + rgb.view(3, 1, 1) * alpha


def place(rng: np.random.Generator, r_range=(5.0, 12.0)) -> tuple[float, float, float]:
    """Centre and half extent of a shape that stays inside the frame."""
    r = float(rng.uniform(*r_range))
    lo, hi = min(r + 0.5, 16.0), max(31.5 - r, 16.0)
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)), r


def degrade(x: torch.Tensor, rng: np.random.Generator, blur=(0.0, 1.0), noise=(0.0, 0.06), warp=(0.0, 0.8),
            jitter: float = 0.1, p_resample: float = 0.3) -> torch.Tensor:
    """What a decoder does to a render: Gaussian blur, down/up-sampling, colour jitter, a smooth warp
    (displacement field of up to ``warp`` pixels) and pixel noise, each drawn per image."""
    out = []
    for img in x:
        img = img.unsqueeze(0)
        sig = float(rng.uniform(*blur))
        if sig > 0.2:
            t = torch.arange(-2, 3, dtype=torch.float32)
            k = torch.exp(-0.5 * (t / sig) ** 2)
            k = (k / k.sum()).view(1, 1, 1, 5).repeat(3, 1, 1, 1)
            img = F.conv2d(F.pad(img, (2, 2, 0, 0), mode="replicate"), k, groups=3)
            img = F.conv2d(F.pad(img, (0, 0, 2, 2), mode="replicate"), k.transpose(2, 3), groups=3)
        if rng.random() < p_resample:
            f = float(rng.choice([0.5, 0.625, 0.75]))
            img = F.interpolate(F.interpolate(img, scale_factor=f, mode="area"), size=(32, 32), mode="bilinear",
                                align_corners=False)
        amp = float(rng.uniform(*warp)) / 16.0  # pixels -> grid_sample units
        if amp > 0:
            d = torch.from_numpy(rng.standard_normal((1, 2, 4, 4)).astype(np.float32))
            d = F.interpolate(d, size=(32, 32), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
            base = F.affine_grid(torch.eye(2, 3).unsqueeze(0), (1, 3, 32, 32), align_corners=False)
            img = F.grid_sample(img, base + amp * d / d.abs().max().clamp(min=1e-6), padding_mode="border",
                                align_corners=False)
        gain = 1 + jitter * (torch.from_numpy(rng.random(3).astype(np.float32)) - 0.5)
        img = img * gain.view(1, 3, 1, 1) + jitter * 0.5 * (float(rng.random()) - 0.5)
        img = img + float(rng.uniform(*noise)) * torch.from_numpy(rng.standard_normal(img.shape).astype(np.float32))
        out.append(img[0])
    return torch.stack(out).clamp(0, 1)


# --------------------------------------------------------------------------- noise and blobs
def colour_noise(n: int, rng: np.random.Generator, scales=(1, 2, 4, 8), blend=(0.5, 1.0), amp=(0.2, 1.5)) -> tuple:
    """Colour noise drawn on a (32/scale)^2 grid and upsampled, blended over a world background: Gaussian
    around grey with amplitude ``amp`` and clipped (large amplitudes saturate, as an untrained decoder does)."""
    bgs, _ = backgrounds(n, rng)
    out = []
    for i in range(n):
        s = int(scales[rng.integers(len(scales))])
        m = max(32 // s, 1)
        z = 0.5 + float(rng.uniform(*amp)) * torch.from_numpy(rng.standard_normal((1, 3, m, m), dtype=np.float32))
        if m != 32:
            z = (F.interpolate(z, size=(32, 32), mode="nearest") if rng.random() < 0.3
                 else F.interpolate(z, size=(32, 32), mode="bilinear", align_corners=False))
        a = float(rng.uniform(*blend))
        out.append(bgs[i] * (1 - a) + z[0].clamp(0, 1) * a)
    return torch.stack(out).clamp(0, 1), torch.zeros(n, len(world.KINDS))


def smooth_blobs(n: int, rng: np.random.Generator, count=(1, 4), sigma=(1.5, 6.0)) -> tuple:
    """1-3 anisotropic Gaussian blobs of world colours (soft edges, no corners) on a world background."""
    bgs, names = backgrounds(n, rng)
    X, Y = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(32.0) + 0.5, indexing="xy")
    out = []
    for i in range(n):
        img = bgs[i]
        for _ in range(int(rng.integers(*count))):
            cx, cy = rng.uniform(6, 26, 2)
            sx, sy = rng.uniform(*sigma, 2)
            th = rng.uniform(0, math.pi)
            u = (X - cx) * math.cos(th) + (Y - cy) * math.sin(th)
            v = -(X - cx) * math.sin(th) + (Y - cy) * math.cos(th)
            a = float(rng.uniform(0.7, 1.4)) * torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
            img = _paint(img, a.clamp(0, 1), _colour(rng, names[i]))
        out.append(img)
    return torch.stack(out).clamp(0, 1), torch.zeros(n, len(world.KINDS))
