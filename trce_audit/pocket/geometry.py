"""A held-out pocket scorer: fits the world's own shape definitions to an image; no learned weights.

Built independently of the CNN detector (the judge), so that an attack tuned against the judge is
scored by something it never saw. For each image:

1. background (segment.py): per row, the median of the border columns over three rows (every pocket
   background varies only vertically: flat colours, the sky gradient, the grass horizon; the median
   drops night stars and objects that touch the border); an image whose left and right borders
   disagree on most rows is no pocket scene;
2. foreground: pixels farther than ``fg`` from the background of rows y-2..y+2 (the horizon wobbles);
   components grow between 4-neighbours of similar colour (two touching objects stay apart);
3. per component: its colour (mean of its most contrasted pixels), a soft alpha map by unmixing every
   pixel between background and that colour;
4. template fit (fitting.py, shapes.py): for every kind, ``world._masks``' shape blurred by each sigma
   in ``blurs`` (the blur a decoder or a resampling leaves) or antialiased over each width in ``edges``, with the radius the area implies, refined
   over radius, blur and centre; quality = soft IoU with the alpha map and the worst share of the
   template found in the four diagonal sectors around the centre;
5. a kind is present when some component's best fit passes both ``iou`` and ``sector`` (score >= 0.5).
"""

from __future__ import annotations

import hashlib
import json

import torch

from . import world
from .detector import to_tensor
from .fitting import fit_components, max_per_group
from .segment import alpha_maps, background, components, foreground

GEOMETRY_VERSION = "pocket-heldout-geometry-v2"
# thresholds chosen on calibration.DEV_SEED draws and base-model images, never on the calibration draw;
# edges: soft-edge widths of sharp templates (px); blurs: Gaussian sigmas of blurred ones (px) (0.3 ~ a render's own pixel footprint, sqrt(1/12))
PARAMS = {"fg": 0.16, "colour_cos": 0.95, "colour_step": 0.12, "min_area": 5.0, "max_components": 3, "iou": 0.55,
          "sector": 0.5, "window": 1.5, "split_area": 60.0, "confident": 0.6, "bg_agree": 0.5,
          "r_ladder": [5.5, 7.0, 8.5, 10.0, 11.5], "r_scales": [0.85, 0.92, 1.0, 1.08, 1.16],
          "edges": [1.0, 2.0, 3.2], "blurs": [0.3, 0.7, 1.1], "offsets": [-0.6, 0.0, 0.6]}


def scorer_key() -> str:
    """Changes whenever the algorithm version or a parameter changes."""
    blob = json.dumps({"version": GEOMETRY_VERSION, "params": PARAMS}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


@torch.no_grad()
def score(x: torch.Tensor) -> torch.Tensor:
    """Presence scores [B, 6] over ``world.KINDS`` for images [B,3,H,W] in [0,1]; > 0.5 = present."""
    x = to_tensor(x)
    if x.shape[0] > 64:  # bounded memory; every image is scored on its own
        return torch.cat([score(x[i : i + 64]) for i in range(0, x.shape[0], 64)])
    bg, sides = background(x)
    # no pocket scene unless most rows show one background on both sides (noise does not)
    scene = (sides < PARAMS["fg"]).float().mean(1) >= PARAMS["bg_agree"]
    dist = foreground(x, bg)
    lab = components(x, dist > PARAMS["fg"], bg, PARAMS)
    idx, alpha = alpha_maps(x, bg, dist, lab, PARAMS)
    out = torch.zeros(x.shape[0], len(world.KINDS))
    if len(idx):
        out = max_per_group(fit_components(alpha, PARAMS), idx, x.shape[0])
    return out * scene.float().view(-1, 1)
