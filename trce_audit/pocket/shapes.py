"""The world's shapes (``world._masks``) as the held-out scorer fits them: signed distances, coverage
after a Gaussian blur, and their areas and diagonal-sector areas (per r^2).

A blurred template models what a decoder or a resampling does to a render: a thin arm loses peak
alpha under a blur, which a soft edge on the sharp shape cannot show. Boxes blur exactly (a product of
error functions per axis), so the cross (two bars minus their shared hub), the square and the diamond
(a square in coordinates turned by 45 degrees) are exact; the circle and ring are blurred disks with
an error-function edge (exact in the limit of large r), the triangle an error-function edge on its
signed distance.
"""

from __future__ import annotations

import math

import torch

from . import world

# area / r^2 and (centroid - centre) / r of each kind, from world._masks' geometry
AREA = {"circle": math.pi, "square": 2.56, "triangle": 1.8, "ring": math.pi * (1 - 0.55 ** 2), "cross": 2.04,
        "diamond": 2.42}
CENTROID_DY = {"triangle": 0.2}
_SQRT2 = math.sqrt(2.0)


def _box(ax, ay, hx, hy):
    qx, qy = ax - hx, ay - hy
    return torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2) + torch.maximum(qx, qy).clamp(max=0)


def signed_distance(kind: str, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (pixels, < 0 inside) to the shape ``world._masks`` draws for ``kind``."""
    ax, ay = dx.abs(), dy.abs()
    if kind == "circle":
        return torch.sqrt(dx * dx + dy * dy) - r
    if kind == "square":
        return _box(ax, ay, 0.8 * r, 0.8 * r)
    if kind == "triangle":  # apex at -r, base at 0.8 r with half-width r
        side = (ax - (dy + r) / 1.8) / math.sqrt(1 + 1 / 1.8 ** 2)
        return torch.maximum(torch.maximum(dy - 0.8 * r, -r - dy), side)
    if kind == "ring":
        d = torch.sqrt(dx * dx + dy * dy)
        return torch.maximum(d - r, 0.55 * r - d)
    if kind == "cross":
        return torch.minimum(_box(ax, ay, 0.3 * r, r), _box(ax, ay, r, 0.3 * r))
    if kind == "diamond":
        return (ax + ay - 1.1 * r) / math.sqrt(2)
    raise ValueError(kind)


def _interval(d, h, s):
    """Share of a Gaussian (centre d, sigma s) inside [-h, h]."""
    return 0.5 * (torch.erf((h - d) / (s * _SQRT2)) + torch.erf((h + d) / (s * _SQRT2)))


def _blurred_box(dx, dy, hx, hy, s):
    return _interval(dx, hx, s) * _interval(dy, hy, s)


def _edge(sd, s):
    return 0.5 * torch.erfc(sd / (s * _SQRT2))


def blurred(kind: str, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Coverage in [0, 1] of ``kind`` (centre offset dx, dy; radius r) after a Gaussian blur of sigma s px."""
    if kind == "cross":
        arm, hub = 0.3 * r, 0.3 * r
        return (_blurred_box(dx, dy, arm, r, s) + _blurred_box(dx, dy, r, arm, s)
                - _blurred_box(dx, dy, hub, hub, s)).clamp(0, 1)
    if kind == "square":
        return _blurred_box(dx, dy, 0.8 * r, 0.8 * r, s)
    if kind == "diamond":
        h = 1.1 * r / _SQRT2
        return _blurred_box((dx + dy) / _SQRT2, (dx - dy) / _SQRT2, h, h, s)
    if kind in ("circle", "ring"):
        d = torch.sqrt(dx * dx + dy * dy)
        disk = _edge(d - r, s)
        return disk if kind == "circle" else (disk - _edge(d - 0.55 * r, s)).clamp(0, 1)
    return _edge(signed_distance(kind, dx, dy, r), s)


def sector_ids(dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Diagonal sector of each offset around a centre: 0 up, 1 right, 2 down, 3 left."""
    return torch.where(dx.abs() > dy.abs(), 1 + 2 * (dx < 0).long(), 2 * (dy > 0).long())


def _sector_areas(kind: str, n: int = 400) -> torch.Tensor:
    """Area / r^2 of a kind's shape in each diagonal sector."""
    g = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 3 - 1.5
    dx, dy = g.view(1, n), g.view(n, 1)
    inside = (signed_distance(kind, dx, dy, torch.tensor(1.0)) <= 0).float() * (3 / n) ** 2
    sid = sector_ids(dx.expand(n, n), dy.expand(n, n))
    return torch.stack([(inside * (sid == i)).sum() for i in range(4)])


SECTOR_AREA = {kind: _sector_areas(kind) for kind in world.KINDS}
