"""Train pocket detector v2 (the judge): v1 fine-tuned on what generated images show besides clean shapes.

    python -m trce_audit.pocket.judge_training --steps 400 --threads 1

Each batch is half world renders (v1's augmentations, plus the calibration degradations with their own
draws) and half negatives from ``negatives`` / ``nearmiss``: colour noise at several scales, smooth blobs,
near-miss shapes (all kinds 0) and partial crosses labelled by what is visible. The colour and background
heads learn from renders only. Seeds: numpy streams ``default_rng([seed, 2])`` (seed 1 by default); the
calibration set draws from ``default_rng([CALIBRATION_SEED, subset])`` -- different entropy, so disjoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from . import nearmiss, negatives, world
from .detector import DETECTOR_PATHS, PocketDetector, _load, augment, detector_info, evaluate_accuracy

V1 = "pocket-detector-v1"
V2 = "pocket-detector-v2"


def negative_batch(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n images mixing the four negative families (training ranges)."""
    parts = [negatives.colour_noise(n // 4, rng, scales=(1, 2, 3, 4, 8), amp=(0.15, 1.6)),
             negatives.smooth_blobs(n // 6, rng, sigma=(1.5, 6.0)),
             nearmiss.near_miss(n // 4, rng, angle=(33.0, 45.0)),
             nearmiss.partial_crosses(n - n // 4 - n // 6 - n // 4, rng, occluder_colour="any")]
    x = torch.cat([p[0] for p in parts])
    x = torch.where(torch.from_numpy(rng.random(len(x)) < 0.5).view(-1, 1, 1, 1),
                    negatives.degrade(x, rng, blur=(0.0, 1.0), warp=(0.0, 0.8)), x)
    return x, torch.cat([p[1] for p in parts])


def train_v2(out: str | Path = DETECTOR_PATHS[V2], steps: int = 400, batch: int = 96, seed: int = 1,
             lr: float = 1e-3, log_every: int = 50) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 2])
    g = torch.Generator().manual_seed(seed)
    net = PocketDetector()
    net.load_state_dict(_load(str(DETECTOR_PATHS[V1])).state_dict())
    for p in net.parameters():
        p.requires_grad_(True)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    half = batch // 2
    for step in range(steps):
        scenes = [world.sample_scene(rng, p_second=0.5) for _ in range(half)]
        xr = world.render(scenes)
        if rng.random() < 0.5:
            xr = negatives.degrade(xr, rng, blur=(0.0, 1.3), warp=(0.0, 1.0))
        xr = augment(xr, g)
        y = world.labels(scenes)
        xn, kn = negative_batch(batch - half, rng)
        o = net(torch.cat([xr, xn]))
        loss = (F.binary_cross_entropy_with_logits(o["kinds"], torch.cat([y["kinds"], kn]))
                + 0.5 * F.binary_cross_entropy_with_logits(o["colours"][:half], y["colours"])
                + 0.3 * F.cross_entropy(o["background"][:half], y["background"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"v2 step {step} loss {loss.item():.4f} t={time.time() - t0:.0f}s", flush=True)
    seconds = round(time.time() - t0, 1)
    net.eval()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    _load.cache_clear()
    res = evaluate_accuracy(_load(str(out)))
    res.update(train_steps=steps, batch=batch, train_seed=seed, init=V1, seconds=seconds)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description="train pocket detector v2 (fine-tunes v1 with negatives)")
    ap.add_argument("--out", default=str(DETECTOR_PATHS[V2]))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = train_v2(a.out, a.steps, a.batch, a.seed)
    res["info"] = detector_info(a.out, version=V2)
    res["command"] = f"python -m trce_audit.pocket.judge_training --steps {a.steps} --batch {a.batch} --threads {a.threads}"
    if Path(a.out).resolve() == DETECTOR_PATHS[V2].resolve():
        Path(a.out).with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
