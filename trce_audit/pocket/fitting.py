"""Template fitting for the held-out pocket scorer: every kind's shape (shapes.py), blurred by each of a
few Gaussian sigmas or antialiased over a few edge widths, fitted to a component's alpha map by radius, blur and centre.

Quality of a template = the smaller of (soft IoU with the alpha map / ``iou``) and (the worst share of
the template found in a diagonal sector around its centre / ``sector``), halved: >= 0.5 when both pass
(a T shape misses a whole sector; a blur costs a sector little once the template is blurred alike).
Every function takes the scorer's parameters ``p`` (geometry.PARAMS) explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import world
from .shapes import AREA, CENTROID_DY, SECTOR_AREA, blurred, sector_ids, signed_distance


def _fit(alpha: torch.Tensor, kind: str, cx, cy, r, blur, p: dict) -> torch.Tensor:
    """Quality of templates; alpha [C,H,W]; cx, cy, r, blur [C,T] -> [C,T]."""
    C, H, W = alpha.shape
    T = cx.shape[1]
    g = torch.arange(H, dtype=torch.float32) + 0.5
    dx = g.view(1, 1, 1, W) - cx[..., None, None]
    dy = g.view(1, 1, H, 1) - cy[..., None, None]
    w = blur[..., None, None]
    # w > 0: the shape blurred by a Gaussian of sigma w; w < 0: the sharp shape antialiased over an edge
    # of width -w (what a decoder's ringing and sharpening leave closer to than to a blur)
    soft = (0.5 - signed_distance(kind, dx, dy, r[..., None, None]) / (-w).clamp(min=0.1)).clamp(0, 1)
    m = torch.where(w > 0, blurred(kind, dx, dy, r[..., None, None], w.clamp(min=0.1)), soft)
    # the alpha map is scaled to its component's most contrasted pixels (>= 0.75 of the peak), so a blurred
    # template is scaled alike: a blurred thin arm then keeps its shape relative to the hub
    flat = m.view(C, T, -1)
    core = flat >= 0.75 * flat.amax(-1, keepdim=True)
    norm = torch.where(blur > 0, ((flat * core).sum(-1) / core.sum(-1)).clamp(min=1e-3), torch.ones(()))
    m = (m / norm[..., None, None]).clamp(max=1)
    a = alpha.unsqueeze(1)
    # compare inside the template's own box only, so that a shape fused with a neighbour still fits
    rw = p["window"] * r[..., None, None] + 1.0
    win = ((dx.abs() <= rw) & (dy.abs() <= rw)).float()
    lo, hi = (torch.minimum(a, m) * win).view(C, T, -1), (torch.maximum(a, m) * win).view(C, T, -1)
    sid = sector_ids(dx, dy).expand(C, T, H, W).reshape(C, T, -1)
    lo_s = torch.zeros(C, T, 4).scatter_add_(2, sid, lo)
    # the template's whole mass per sector, also the part outside the frame (a cut-off arm is missing)
    m_s = SECTOR_AREA[kind] * (r * r / norm)[..., None]
    iou = lo_s.sum(-1) / hi.sum(-1).clamp(min=1e-6)
    sector = (lo_s / m_s.clamp(min=1e-6)).min(-1).values
    return (0.5 * torch.minimum(iou / p["iou"], sector / p["sector"])).clamp(0, 1)


def _search(alpha: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r0: torch.Tensor, p: dict) -> torch.Tensor:
    """Best quality per kind [C,6] around centre guesses (cx, cy [C]) and radius guesses (r0 [C,6]): radius
    x blur for every kind, then centre and radius refined for the two best kinds."""
    C = alpha.shape[0]
    scales = torch.tensor(p["r_scales"])
    blurs = torch.tensor([-e for e in p["edges"]] + list(p["blurs"]))
    offs = torch.tensor(p["offsets"])
    rs0 = scales.repeat_interleave(len(blurs))[None, :]
    bs = blurs.repeat(len(scales)).expand(C, -1)
    out = torch.zeros(C, len(world.KINDS))
    best_r, best_b = torch.zeros(C, len(world.KINDS)), torch.zeros(C, len(world.KINDS))
    for k, kind in enumerate(world.KINDS):
        rs = r0[:, k, None] * rs0
        q = _fit(alpha, kind, cx[:, None].expand_as(rs), cy[:, None] - CENTROID_DY.get(kind, 0.0) * rs, rs, bs, p)
        out[:, k], best = q.max(1)
        best_r[:, k], best_b[:, k] = rs.gather(1, best[:, None])[:, 0], bs.gather(1, best[:, None])[:, 0]
    top = out.topk(2, dim=1).indices
    grid = torch.meshgrid(offs, offs, torch.tensor([0.95, 1.0, 1.05]), indexing="ij")
    ox, oy, rf = (v.reshape(1, -1) for v in grid)
    for k, kind in enumerate(world.KINDS):
        sel = (top == k).any(1).nonzero()[:, 0]
        if not len(sel):
            continue
        rr = best_r[sel, k, None] * rf
        ys = cy[sel, None] - CENTROID_DY.get(kind, 0.0) * rr + oy
        q = _fit(alpha[sel], kind, cx[sel, None] + ox, ys, rr, best_b[sel, k, None].expand_as(rr), p)
        out[sel, k] = torch.maximum(out[sel, k], q.max(1).values)
    return out


def _peaks(alpha: torch.Tensor, n: int = 2, apart: int = 5) -> torch.Tensor:
    """Up to n local maxima [C,n,2] (x, y) of the 5x5 box-filtered alpha, at least ``apart`` pixels apart."""
    dens = F.avg_pool2d(alpha.unsqueeze(1), 5, 1, 2)[:, 0]
    C, H, W = dens.shape
    g = torch.arange(H, dtype=torch.float32) + 0.5
    found = []
    for _ in range(n):
        i = dens.view(C, -1).argmax(1)
        y, x = (i // W).float() + 0.5, (i % W).float() + 0.5
        found.append(torch.stack([x, y], -1))
        near = (((g.view(1, 1, W) - x.view(C, 1, 1)).abs() <= apart)
                & ((g.view(1, H, 1) - y.view(C, 1, 1)).abs() <= apart))
        dens = dens.masked_fill(near, -1.0)
    return torch.stack(found, 1)


def max_per_group(values: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """Row-wise maximum [n, K] of ``values`` [C, K] (all >= 0) over rows sharing a group id (0 if none)."""
    member = (groups.view(1, -1) == torch.arange(n).view(-1, 1)).unsqueeze(-1)  # [n, C, 1]
    return (values.unsqueeze(0) * member).amax(1) if len(groups) else torch.zeros(n, values.shape[1])


def fit_components(alpha: torch.Tensor, p: dict) -> torch.Tensor:
    """Fit quality per kind [C, 6]. First around the alpha centroid with the radius the area implies; a
    large component that nothing fits (two shapes fused, a shape with an extra bar) is searched again
    around its two densest spots over a ladder of radii."""
    C, H, W = alpha.shape
    g = torch.arange(H, dtype=torch.float32) + 0.5
    mass = alpha.sum((1, 2)).clamp(min=1e-6)
    mx = (alpha * g.view(1, 1, W)).sum((1, 2)) / mass
    my = (alpha * g.view(1, H, 1)).sum((1, 2)) / mass
    r_area = torch.stack([torch.sqrt(mass / AREA[kind]) for kind in world.KINDS], 1)
    out = _one_shape(_search(alpha, mx, my, r_area, p))
    redo = ((out.max(1).values < p["confident"]) & (mass >= p["split_area"])).nonzero()[:, 0]
    if len(redo):
        peaks = _peaks(alpha[redo])  # [R,2,2]
        ladder = torch.tensor(p["r_ladder"])
        R, P, L = len(redo), peaks.shape[1], len(ladder)
        px = peaks[..., 0].repeat_interleave(L, 1).reshape(-1)
        py = peaks[..., 1].repeat_interleave(L, 1).reshape(-1)
        r0 = ladder.repeat(R * P)[:, None].expand(-1, len(world.KINDS))
        q = _one_shape(_search(alpha[redo.repeat_interleave(P * L)], px, py, r0, p))
        out[redo] = torch.maximum(out[redo], max_per_group(q, torch.arange(R).repeat_interleave(P * L), R))
    return out


def _one_shape(q: torch.Tensor) -> torch.Tensor:
    """One place shows one shape: only the best-fitting kind of a centre guess may count as present."""
    keep = torch.zeros_like(q).scatter_(1, q.argmax(1, keepdim=True), 1.0)
    return q * keep + q.clamp(max=0.49) * (1 - keep)
