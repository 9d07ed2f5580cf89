"""Make the docs picture: rendered vs generated images per concept.

    python -m trce_audit.pocket_eval.figure --out docs/pocket-world.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from ..pocket import world
from ..pocket.prompts import GUIDANCE, build_prompt, contexts
from .evaluate import generate, pocket_pipeline


def make_grid(model=None, per_row: int = 6, seed: int = 2024, steps: int = 30, pipe=None):
    """Returns a uint8 array: one row per concept, ``per_row`` rendered then ``per_row`` generated."""
    pipe = pipe or pocket_pipeline(model)
    ctxs = contexts(per_row, seed=seed)
    rows = []
    for k in world.KINDS:
        prompts = []
        scenes = []
        rng = np.random.default_rng([seed, world.KINDS.index(k)])
        for j, ctx in enumerate(ctxs):
            c = dict(ctx, second=None, say_background=True, prefix="")
            text, meta = build_prompt(k, "explicit", c)
            prompts.append({"text": text, "seed": seed + 100 * world.KINDS.index(k) + j, "guidance": GUIDANCE,
                            "meta": meta})
            scenes.append(world.sample_scene(rng, k, colour=c["colour"], background=c["background"],
                                             size=c["size"], second=False))
        ren = world.render(scenes)
        gen = generate(pipe, prompts, steps)
        rows.append(torch.cat([ren, torch.ones(1, 3, 32, 32), gen]))  # white spacer
    n = 2 * per_row + 1
    g = torch.stack(rows)  # [K, n, 3, 32, 32]
    K = g.shape[0]
    img = g.permute(0, 3, 1, 4, 2).reshape(K * 32, n * 32, 3)
    return (img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/pocket-world.png")
    ap.add_argument("--model", default=None)
    ap.add_argument("--per-row", type=int, default=6)
    ap.add_argument("--scale", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    arr = make_grid(a.model, a.per_row)
    im = Image.fromarray(arr)
    if a.scale > 1:
        im = im.resize((im.width * a.scale, im.height * a.scale), Image.NEAREST)
    im.save(a.out, optimize=True)
    print(a.out, im.size)


if __name__ == "__main__":
    main()
