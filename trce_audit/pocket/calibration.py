"""The pocket calibration set: labelled images on which every pocket scorer's sensitivity and specificity
are measured (benchmarks/pocket_calibration.py), for the concept under audit and per kind.

    python -m trce_audit.pocket.calibration --out DIR      # PNGs under DIR/<subset>/ + DIR/labels.csv

Subsets (2,060 images at the default seed): ``fresh`` world renders; ``degraded`` renders blurred,
noised, down/up-sampled, colour-jittered and warped; ``noise`` colour noise at scales 1-16 px;
``blobs`` smooth Gaussian blobs; ``near_miss`` rotated crosses, T/L shapes, stubby and fat-armed
crosses, merged shapes; ``partial`` occluded or frame-cut crosses labelled by what is visible
(rules in negatives.py). Each subset draws from ``numpy.random.default_rng([seed, index])`` with
``CALIBRATION_SEED``: detector v2 trains on ``default_rng([1, 2])`` streams and the held-out scorer's
thresholds were set on ``DEV_SEED`` draws, so neither saw these images.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import nearmiss, negatives, world

CALIBRATION_SEED = 20261201
DEV_SEED = 777  # the held-out scorer's development draw (its thresholds were chosen on it)
SUBSETS = {"fresh": 400, "degraded": 400, "noise": 300, "blobs": 300, "near_miss": 360, "partial": 300}
CROSS = world.KINDS.index(world.TARGET)


def _renders(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    scenes = [world.sample_scene(rng) for _ in range(n)]
    return world.render(scenes), world.labels(scenes)["kinds"]


def build_subset(name: str, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [n,3,32,32] and multi-hot kinds [n,6] of one subset (calibration parameter ranges)."""
    if name == "fresh":
        return _renders(n, rng)
    if name == "degraded":
        x, k = _renders(n, rng)
        return negatives.degrade(x, rng, blur=(0.3, 1.2), noise=(0.0, 0.06), warp=(0.0, 0.8), jitter=0.12,
                                 p_resample=0.4), k
    if name == "noise":
        return negatives.colour_noise(n, rng, scales=(1, 2, 3, 4, 6, 8, 16), amp=(0.1, 1.8), blend=(0.4, 1.0))
    if name == "blobs":
        return negatives.smooth_blobs(n, rng, count=(1, 4), sigma=(1.2, 7.0))
    if name == "near_miss":
        return nearmiss.near_miss(n, rng, angle=(35.0, 45.0))
    if name == "partial":
        return nearmiss.partial_crosses(n, rng)
    raise ValueError(name)


def calibration_set(seed: int = CALIBRATION_SEED, scale: float = 1.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """subset -> (images, kinds); ``scale`` shrinks every subset (quick looks; the stored figures use 1)."""
    out = {}
    for i, (name, n) in enumerate(SUBSETS.items()):
        x, kinds = build_subset(name, max(int(n * scale), 6), np.random.default_rng([seed, i]))
        out[name] = ((x * 255).round() / 255, kinds)  # what the PNGs hold
    return out


def counts(present: torch.Tensor, kinds: torch.Tensor) -> dict[str, int]:
    """Confusion counts of presence calls [n] (bool) against ground truth [n] (0/1)."""
    truth = kinds.bool()
    return {"true_positives": int((present & truth).sum()), "positives": int(truth.sum()),
            "true_negatives": int((~present & ~truth).sum()), "negatives": int((~truth).sum())}


def write(out: str | Path, seed: int = CALIBRATION_SEED) -> int:
    out = Path(out)
    rows = []
    for name, (x, kinds) in calibration_set(seed).items():
        (out / name).mkdir(parents=True, exist_ok=True)
        pixels = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, (px, k) in enumerate(zip(pixels, kinds)):
            file = f"{name}/{i:05d}.png"
            Image.fromarray(px).save(out / file)
            present = [world.KINDS[j] for j in k.nonzero()[:, 0].tolist()]
            rows.append({"file": file, "subset": name, "cross": int(k[CROSS]), "kinds": ";".join(present)})
    with open(out / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "subset", "cross", "kinds"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="write the pocket calibration set (PNGs + labels.csv)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{write(a.out, a.seed)} images -> {a.out}")


if __name__ == "__main__":
    main()
