"""The pocket detectors on generated images: the shipped base model and a random-weight UNet.

    python benchmarks/pocket_judges_base.py [--n 64] [--threads 1]

Draws ``--n`` pocket-explicit and ``--n`` pocket-preserve images with the shipped pocket model (30 steps,
the prompt rows' own seeds), and ``--n`` pocket-explicit images with the same pipeline whose UNet is
re-initialised with seed 1234 (pure colour noise), then prints for detector v1, v2 (the judge) and
pocket-heldout: the share of explicit images that show a cross, preserve_acc (preserve images that show
the shape they asked for), the share of noise images called a cross, and each one's agreement with v2
on the cross call over the base model's images. These are the figures docs/pocket-world.md quotes; the
tests in tests/test_pocket_scorers.py assert the acceptance bars on the same draws.
"""

from __future__ import annotations

import argparse
import json

import torch

from trce_audit.models.resolve import load_pipeline, resolve_model
from trce_audit.pocket import geometry, world
from trce_audit.pocket.builders import build_unet
from trce_audit.pocket.detector import detect, load_detector
from trce_audit.pocket.prompts import pocket_prompt_set
from trce_audit.pocket_eval.evaluate import generate


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(resolve_model("pocket"))
    rows = {name: pocket_prompt_set(name)[: args.n] for name in ("pocket-explicit", "pocket-preserve")}
    images = {name: generate(pipe, prompt_rows, steps=30) for name, prompt_rows in rows.items()}
    trained = pipe.unet
    torch.manual_seed(1234)
    pipe.unet = build_unet().eval()
    noise = generate(pipe, rows["pocket-explicit"], steps=30)
    pipe.unet = trained

    scorers = {
        "pocket v1": lambda x: detect(x, load_detector(version="pocket-detector-v1")) > 0.5,
        "pocket v2 (judge)": lambda x: detect(x, load_detector(version="pocket-detector-v2")) > 0.5,
        "pocket-heldout": lambda x: geometry.score(x) > 0.5,
    }
    cross = world.KINDS.index(world.TARGET)
    asked = torch.tensor([world.KINDS.index(row["meta"]["concept"]) for row in rows["pocket-preserve"]])
    base = torch.cat([images["pocket-explicit"], images["pocket-preserve"]])
    judge_calls = scorers["pocket v2 (judge)"](base)[:, cross]
    report = {}
    for name, call in scorers.items():
        preserve = call(images["pocket-preserve"])
        report[name] = {
            "explicit_cross": round(call(images["pocket-explicit"])[:, cross].float().mean().item(), 4),
            "preserve_acc": round(preserve[torch.arange(len(asked)), asked].float().mean().item(), 4),
            "random_unet_cross": round(call(noise)[:, cross].float().mean().item(), 4),
            "agreement_with_judge": round((call(base)[:, cross] == judge_calls).float().mean().item(), 4),
        }
    print(json.dumps({"n": args.n, "detectors": report}, indent=2))
    return report


if __name__ == "__main__":
    main()
