"""The held-out scorer's ``sector`` bar against base-model crosses and partial-cross T shapes.

    python benchmarks/pocket_heldout_sector.py [--sectors 0.5,0.6,0.7] [--n 256]

Draws ``--n`` pocket-explicit images with the shipped base model (30 steps) and 300 partial crosses from
each development seed (``calibration.DEV_SEED`` and the next one; never the calibration seed), then prints,
per ``sector`` value, the share of base images called a cross and the partial subset's specificity and
sensitivity: the trade-off docs/pocket-world.md quotes for keeping ``sector`` at 0.5.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from trce_audit.models.resolve import load_pipeline, resolve_model
from trce_audit.pocket import calibration, geometry, nearmiss
from trce_audit.pocket.prompts import pocket_prompt_set
from trce_audit.pocket_eval.evaluate import generate


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sectors", default="0.5,0.6,0.7")
    ap.add_argument("--n", type=int, default=256)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    base = generate(load_pipeline(resolve_model("pocket")), pocket_prompt_set("pocket-explicit")[: args.n], steps=30)
    seeds = (calibration.DEV_SEED, calibration.DEV_SEED + 1)
    draws = [nearmiss.partial_crosses(300, np.random.default_rng([s, 5])) for s in seeds]
    partial = (torch.cat([d[0] for d in draws]) * 255).round() / 255
    truth = torch.cat([d[1] for d in draws])[:, calibration.CROSS].bool()
    default = geometry.PARAMS["sector"]
    try:
        for sector in (float(v) for v in args.sectors.split(",")):
            geometry.PARAMS["sector"] = sector
            on_base = geometry.score(base)[:, calibration.CROSS] > 0.5
            called = geometry.score(partial)[:, calibration.CROSS] > 0.5
            print(f"sector {sector}: base cross {on_base.float().mean():.3f} (n {len(base)}), partial specificity "
                  f"{(~called[~truth]).float().mean():.3f}, sensitivity {called[truth].float().mean():.3f}")
    finally:
        geometry.PARAMS["sector"] = default


if __name__ == "__main__":
    main()
