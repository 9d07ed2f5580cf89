"""Segmentation for the held-out pocket scorer: background rows, foreground, colour-consistent
components and a soft alpha map per component (see geometry.py for the whole pipeline).

Every function takes the scorer's parameters ``p`` (geometry.PARAMS) explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def background(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row background colour [B,3,32] from the border columns: the left or the right pair, whichever
    is closer to the median of both over nine rows (an object touching one side spans fewer rows); and
    the left-right difference per row [B,32] (every pocket background is the same on both sides)."""
    H = x.shape[2]

    def rows_median(v: torch.Tensor, k: int) -> torch.Tensor:  # v [B,3,H,n] -> median over rows y±k
        pad = F.pad(v, (0, 0, k, k), mode="replicate")
        return torch.cat([pad[:, :, i : i + H] for i in range(2 * k + 1)], -1).median(-1).values

    left, right = rows_median(x[..., :2], 1), rows_median(x[..., -2:], 1)
    ref = rows_median(torch.stack([left, right], -1), 4)
    use_left = (left - ref).norm(dim=1, keepdim=True) <= (right - ref).norm(dim=1, keepdim=True)
    return torch.where(use_left, left, right), (left - right).norm(dim=1)
def foreground(x: torch.Tensor, bg_rows: torch.Tensor) -> torch.Tensor:
    """Distance of each pixel to the nearest background of rows y-2..y+2 [B,H,W]."""
    H = x.shape[2]
    padded = F.pad(bg_rows, (2, 2), mode="replicate")
    d = [(x - padded[:, :, i : i + H].unsqueeze(-1)).norm(dim=1) for i in range(5)]
    return torch.stack(d, 0).min(0).values


def components(x: torch.Tensor, fg: torch.Tensor, bg_rows: torch.Tensor, p: dict) -> torch.Tensor:
    """Label map [B,H,W] (0 = background) of 4-connected foreground whose colours point the same way from
    the background (cosine > ``colour_cos``: an antialiased or blurred edge pixel is a mix of its object's
    colour and the background, so it joins its object; a touching object of another colour does not) or
    that have nearly one colour (``colour_step``: an object across the grass horizon stays whole)."""
    B, _, H, W = x.shape
    v = x - bg_rows.unsqueeze(-1)
    v = v / v.norm(dim=1, keepdim=True).clamp(min=1e-6)
    lab = torch.where(fg, torch.arange(1, H * W + 1, dtype=torch.float32).view(1, H, W).expand(B, H, W),
                      torch.zeros(()))
    links = []  # (dim, shift, may the label of the neighbour at -shift flow into this pixel)
    for dim, shift in ((2, -1), (2, 1), (1, -1), (1, 1)):
        same = (x - torch.roll(x, shift, dim + 1)).norm(dim=1) < p["colour_step"]
        similar = (v * torch.roll(v, shift, dim + 1)).sum(1) > p["colour_cos"]
        ok = fg & torch.roll(fg, shift, dim) & (same | similar)
        if dim == 2:
            ok[:, :, -1 if shift == -1 else 0] = False
        else:
            ok[:, -1 if shift == -1 else 0, :] = False
        links.append((dim, shift, ok))
    for _ in range(H * W):
        new = lab
        for dim, shift, ok in links:
            new = torch.where(ok, torch.maximum(new, torch.roll(lab, shift, dim)), new)
        if torch.equal(new, lab):
            break
        lab = new
    return lab


def alpha_maps(x, bg_rows, dist, lab, p: dict):
    """Per component (largest first, up to max_components per image): image index, alpha map [C,H,W]."""
    B, _, H, W = x.shape
    idx, maps = [], []
    bg = bg_rows.unsqueeze(-1)  # [B,3,H,1]
    for b in range(B):
        ids, counts = torch.unique(lab[b][lab[b] > 0], return_counts=True)
        big = ids[counts >= p["min_area"]]
        order = counts.argsort(descending=True)[: p["max_components"]]
        for i in order.tolist():
            if counts[i] < p["min_area"]:
                continue
            mask = lab[b] == ids[i]
            d = dist[b] * mask
            core = mask & (d >= 0.75 * d.max())
            col = (x[b] * core).sum((1, 2)) / core.sum()
            diff = col.view(3, 1, 1) - bg[b]
            a = ((x[b] - bg[b]) * diff).sum(0) / (diff * diff).sum(0).clamp(min=1e-4)
            near = F.max_pool2d(mask.float()[None, None], 3, 1, 1)[0, 0] > 0
            others = torch.isin(lab[b], big) & ~mask
            maps.append(a.clamp(0, 1) * (near & ~others))
            idx.append(b)
    if not maps:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, H, W)
    return torch.tensor(idx), torch.stack(maps)
