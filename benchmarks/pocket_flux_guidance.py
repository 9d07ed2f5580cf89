"""pocket-flux's quality bars against the embedded guidance it is sampled at: the bars' draw
(tests/test_pocket_flux.py: the first 64 rows of pocket-explicit and pocket-preserve, each at its own
seed, 30 steps, the held-out scorer) with every row's guidance replaced by each value given.

    python benchmarks/pocket_flux_guidance.py [--model pocket-flux|FOLDER] [--guidance 2,3.5,5,7.5]
"""

from __future__ import annotations

import argparse

import torch

from trce_audit.models.resolve import load_pipeline, resolve_model
from trce_audit.pocket import geometry, world
from trce_audit.pocket.prompts import pocket_prompt_set
from trce_audit.pocket_eval.evaluate import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pocket-flux")
    parser.add_argument("--guidance", default="2,3.5,5,7.5")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(resolve_model(args.model))
    explicit, preserve = pocket_prompt_set("pocket-explicit")[:64], pocket_prompt_set("pocket-preserve")[:64]
    asked = torch.tensor([world.KINDS.index(row["meta"]["concept"]) for row in preserve])
    for value in (float(v) for v in args.guidance.split(",")):
        drawn = generate(pipe, [dict(row, guidance=value) for row in explicit], steps=30)
        kept = generate(pipe, [dict(row, guidance=value) for row in preserve], steps=30)
        cross = (geometry.score(drawn)[:, world.KINDS.index("cross")] > 0.5).float().mean().item()
        right = (geometry.score(kept)[torch.arange(len(preserve)), asked] > 0.5).float().mean().item()
        print(f"guidance {value:g}: explicit cross {cross:.3f} (bar 0.85), preserve {right:.3f} (bar 0.80)", flush=True)


if __name__ == "__main__":
    main()
