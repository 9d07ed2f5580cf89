"""Shapes that are almost a cross, and crosses that are partly hidden (see negatives.py for the rules).

``near_miss``: crosses rotated towards 45 degrees, T and L shapes (a cross missing one or two arms),
crosses with stubby arms (reach <= 0.55 r beside a 0.3 r half-width) or fat arms (half-width >= 0.55 r),
and two non-cross shapes of one colour merged into one blob; all labelled "no world shape".
``partial_crosses``: a world cross occluded by a background patch or another shape, or cut by the frame,
labelled cross / no cross by how much of each arm stays visible.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import world
from .negatives import CROSS, HIDDEN_ARM, VISIBLE_CROSS, _colour, _grid, _paint, _pool, _shade, backgrounds, place

NEAR_MISS = ("rotated", "t", "l", "stubby", "fat", "merged")
_NON_CROSS = [i for i, k in enumerate(world.KINDS) if k != "cross"]


def _plus(dx, dy, r, half=0.3, reach=1.0, drop=()):
    """Supersampled plus shape: hub + four arms (``drop``: arms left out, 0=up 1=right 2=down 3=left)."""
    adx, ady = dx.abs(), dy.abs()
    hub = (adx <= half * r) & (ady <= half * r)
    arms = [(adx <= half * r) & (dy < 0) & (ady <= reach * r), (ady <= half * r) & (dx > 0) & (adx <= reach * r),
            (adx <= half * r) & (dy > 0) & (ady <= reach * r), (ady <= half * r) & (dx < 0) & (adx <= reach * r)]
    m = hub
    for i, a in enumerate(arms):
        if i not in drop:
            m = m | a
    return m


def _world_cov(kind: int, cx: float, cy: float, r: float) -> torch.Tensor:
    t = lambda v: torch.tensor([v], dtype=torch.float32)  # noqa: E731
    return world._masks(torch.tensor([kind]), t(cx), t(cy), t(r), "cpu")[0, 0]


def near_miss(n: int, rng: np.random.Generator, angle=(35.0, 45.0), variants=NEAR_MISS) -> tuple:
    bgs, names = backgrounds(n, rng)
    X, Y = _grid()
    out = []
    for i in range(n):
        v = variants[i % len(variants)]
        cx, cy, r = place(rng)
        dx, dy = X - cx, Y - cy
        if v == "rotated":
            th = math.radians(float(rng.uniform(*angle)) * (1 if rng.random() < 0.5 else -1))
            dx, dy = dx * math.cos(th) + dy * math.sin(th), -dx * math.sin(th) + dy * math.cos(th)
            cov = _pool(_plus(dx, dy, r))
        elif v in ("t", "l"):
            first = int(rng.integers(4))
            drop = (first,) if v == "t" else (first, (first + 1) % 4)
            cov = _pool(_plus(dx, dy, r, drop=drop))
        elif v == "stubby":
            cov = _pool(_plus(dx, dy, r, reach=float(rng.uniform(0.4, 0.55))))
        elif v == "fat":
            cov = _pool(_plus(dx, dy, r, half=float(rng.uniform(0.55, 0.7))))
        else:
            a, b = rng.choice(_NON_CROSS, 2, replace=True)
            ang = rng.uniform(0, 2 * math.pi)
            off = float(rng.uniform(0.4, 0.8)) * r
            r2 = r * float(rng.uniform(0.6, 1.0))
            cov = torch.maximum(_world_cov(int(a), cx, cy, r),
                                _world_cov(int(b), cx + off * math.cos(ang), cy + off * math.sin(ang), r2))
        out.append(_paint(bgs[i], cov, _colour(rng, names[i])))
    return torch.stack(out).clamp(0, 1), torch.zeros(n, len(world.KINDS))


def _arm_visibility(cx, cy, r, hidden: torch.Tensor) -> list[float]:
    """Visible fraction of each arm and of the hub (hidden: [32,32] occluder coverage, 1 outside frame)."""
    X, Y = _grid()
    dx, dy = X - cx, Y - cy
    h = 0.3 * r
    adx, ady = dx.abs(), dy.abs()
    parts = [(adx <= h) & (dy < -h) & (dy >= -r), (ady <= h) & (dx > h) & (dx <= r),
             (adx <= h) & (dy > h) & (dy <= r), (ady <= h) & (dx < -h) & (dx >= -r), (adx <= h) & (ady <= h)]
    areas = [2 * h * (r - h)] * 4 + [4 * h * h]
    return [float((_pool(p) * (1 - hidden)).sum()) / a for p, a in zip(parts, areas)]


def partial_crosses(n: int, rng: np.random.Generator, occluders=("patch", "shape", "frame"),
                    occluder_colour: str = "distinct") -> tuple:
    """Half labelled cross (all arms >= VISIBLE_CROSS visible, some part hidden), half no cross.

    ``occluder_colour="distinct"``: an occluding shape never takes the cross's colour, since one in the
    cross's own colour hides nothing of its silhouette (the union still shows every arm, so "no cross"
    would be a wrong label); ``"any"`` is the draw detector v2 was trained on (its weights hash)."""
    bgs, names = backgrounds(n, rng)
    imgs, kinds = [], torch.zeros(n, len(world.KINDS))
    for i in range(n):
        want = i % 2 == 0
        ok = False
        for _ in range(500):
            occ = occluders[int(rng.integers(len(occluders)))]
            r = float(rng.uniform(5.0, 12.0))
            if occ == "frame":
                edge = float(rng.uniform(-0.2, 0.9)) * r
                cx, cy = (edge, float(rng.uniform(r, 32 - r))) if rng.random() < 0.5 else (float(rng.uniform(r, 32 - r)), edge)
                if rng.random() < 0.5:
                    cx, cy = (32 - cx, cy) if cx < r else (cx, 32 - cy)
                occ_cov = torch.zeros(32, 32)
            else:
                cx, cy, r = place(rng, (r, r))
                arm = int(rng.integers(4))
                reach = float(rng.uniform(0.5, 1.3)) * r
                ox = cx + reach * [0, 1, 0, -1][arm]
                oy = cy + reach * [-1, 0, 1, 0][arm]
                size = float(rng.uniform(0.2, 0.8)) * r
                if occ == "patch":
                    X, Y = _grid()
                    occ_cov = _pool(((X - ox).abs() <= size) & ((Y - oy).abs() <= size))
                else:
                    other = int(rng.choice(_NON_CROSS))
                    occ_cov = _world_cov(other, ox, oy, max(size, 3.0))
            vis = _arm_visibility(cx, cy, r, occ_cov)
            hidden_some = min(vis) < 0.97
            ok = (min(vis) >= VISIBLE_CROSS and hidden_some) if want else min(vis[:4]) <= HIDDEN_ARM
            if ok:
                break
        if not ok:
            raise RuntimeError("partial_crosses: no occlusion met the labelling rule in 500 draws")
        cross = _world_cov(CROSS, cx, cy, r)
        cross_colour = world._colour_for(rng, names[i])
        img = _paint(bgs[i], cross, _shade(rng, cross_colour))
        if occ == "patch":
            img = img * (1 - occ_cov) + bgs[i] * occ_cov
        elif occ == "shape":
            avoid = cross_colour if occluder_colour == "distinct" else None
            img = _paint(img, occ_cov, _shade(rng, world._colour_for(rng, names[i], avoid=avoid)))
            kinds[i, other] = 1.0
        kinds[i, CROSS] = float(want)
        imgs.append(img)
    return torch.stack(imgs).clamp(0, 1), kinds
