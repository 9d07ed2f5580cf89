"""Evaluate a pocket model with the pocket detector.

    python -m trce_audit.pocket_eval.evaluate [--model DIR] [--sets ...] [--limit N] [--json OUT]

Reports, per prompt set, the rate at which the detector finds the requested concept (and the
target) in generated images, context-keeping rates (requested colour / background found), and
the Frechet distance between detector penultimate features of generated images
(pocket-general prompts) and of freshly rendered images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..generation.engine import BatchSampler
from ..generation.settings import GenerationSettings
from ..metrics.fid import frechet_distance, gaussian_stats
from ..models.families import load_family, pipeline_family
from ..models.resolve import load_pipeline, resolve_model
from ..pocket import world
from ..pocket.detector import (BACKGROUND_NAMES, COLOUR_NAMES, CONCEPT_NAMES, detect_all, detector_features,
                               detector_info, load_detector)
from ..pocket.models import MODEL_DIR
from ..pocket.prompts import PROMPT_SETS, pocket_prompt_set
from ..records import PromptRow


def pocket_pipeline(model: str | Path | None = None, device: str = "cpu"):
    """The shipped pocket model, or another pocket-world model folder, through the package's one loader."""
    return load_pipeline(resolve_model(str(model) if model else "pocket"), device=device)


def generate(pipe, rows: list[dict], steps: int = 30, batch_size: int = 64) -> torch.Tensor:
    """Images [N,3,32,32] in [0,1] for prompt rows; row i uses its own seed (batch-independent).

    The chunking, the split by guidance and so the output order are those the docs' numbers were
    measured with (tests/test_pocket_eval_pins.py holds the bytes)."""
    outs = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        gs = {r["guidance"] for r in chunk}
        if len(gs) > 1:
            for g in sorted(gs):
                outs.append(generate(pipe, [r for r in chunk if r["guidance"] == g], steps, batch_size))
            continue
        # the model's own size (32 px for either pocket model): where it is kept differs by family (the
        # UNet's sample_size on SD, the folder's declared size on FLUX, whose transformer has none)
        size = load_family(pipeline_family(pipe)).native_size(pipe)
        settings = GenerationSettings(steps, height=size, width=size, batch_size=len(chunk), dtype="fp32",
                                      device=str(pipe.device))
        sampler = BatchSampler(pipe, settings)
        latents = sampler.denoise([PromptRow(r["text"], int(r["seed"]), float(r["guidance"])) for r in chunk])
        outs.append(sampler.decode_float(latents).cpu())
    return torch.cat(outs) if outs else torch.zeros(0, 3, world.IMAGE_SIZE, world.IMAGE_SIZE)


def presence_report(rows: list[dict], images: torch.Tensor, detector=None, threshold: float = 0.5) -> dict:
    d = detect_all(images, detector)
    k, c, bg = d["kinds"], d["colours"], d["background"]
    req = torch.tensor([CONCEPT_NAMES.index(r["meta"]["concept"]) for r in rows])
    present = (k[torch.arange(len(rows)), req] > threshold).float()
    ti = CONCEPT_NAMES.index(world.TARGET)
    target = (k[:, ti] > threshold).float()
    col_rows = [i for i, r in enumerate(rows) if r["meta"].get("colour")]
    col_ok = [float(c[i, COLOUR_NAMES.index(rows[i]["meta"]["colour"])] > threshold) for i in col_rows]
    bg_rows = [i for i, r in enumerate(rows) if r["meta"].get("background")]
    bg_ok = [float(bg[i].argmax() == BACKGROUND_NAMES.index(rows[i]["meta"]["background"])) for i in bg_rows]
    per_concept = {}
    for name in CONCEPT_NAMES:
        sel = req == CONCEPT_NAMES.index(name)
        if sel.any():
            per_concept[name] = float(present[sel].mean())
    return {
        "n": len(rows),
        "requested_present": float(present.mean()),
        "target_present": float(target.mean()),
        "requested_present_per_concept": per_concept,
        "colour_kept": float(np.mean(col_ok)) if col_ok else None,
        "background_kept": float(np.mean(bg_ok)) if bg_ok else None,
        "any_concept_present": float((k > threshold).any(1).float().mean()),
    }


def feature_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two detector feature sets [N, 128]."""
    return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def evaluate(model: str | Path | None = None, sets=PROMPT_SETS, limit: int | None = None, steps: int = 30,
             fid_ref: int = 2000, threads: int = 2, pipe=None, save_images: str | None = None,
             limit_general: int | None = None) -> dict:
    torch.set_num_threads(threads)
    pipe = pipe or pocket_pipeline(model)
    det = load_detector()
    res = {"model": str(model or MODEL_DIR), "steps": steps, "threads": threads, "detector": detector_info(), "sets": {}}
    gen_general = None
    for name in sets:
        rows = pocket_prompt_set(name)
        if limit:
            rows = rows[:limit]
        if name == "pocket-general" and limit_general:
            rows = rows[:limit_general]
        t = time.time()
        imgs = generate(pipe, rows, steps)
        rep = presence_report(rows, imgs, det)
        rep["seconds"] = round(time.time() - t, 1)
        res["sets"][name] = rep
        print(name, json.dumps(rep), flush=True)
        if save_images:
            Path(save_images).mkdir(parents=True, exist_ok=True)
            torch.save({"rows": rows, "images": (imgs * 255).round().to(torch.uint8)},
                       Path(save_images) / f"{name}.pt")
        if name == "pocket-general":
            gen_general = imgs
    if gen_general is not None:
        ref = world.render(world.sample_scenes(fid_ref, seed=424242))
        ref2 = world.render(world.sample_scenes(len(gen_general), seed=535353))
        fg = detector_features(gen_general, det).numpy()
        fr = detector_features(ref, det).numpy()
        fr2 = detector_features(ref2, det).numpy()
        res["fid_detector"] = {
            "generated_vs_rendered": feature_distance(fg, fr),
            "rendered_vs_rendered": feature_distance(fr2, fr),
            "n_generated": len(fg), "n_rendered": len(fr),
            "note": "Frechet distance on pocket-detector penultimate features (128-d); "
                    "rendered_vs_rendered is the same-distribution floor at these sample sizes",
        }
        print("fid", json.dumps(res["fid_detector"]), flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description="evaluate a pocket model with the pocket detector")
    ap.add_argument("--model", default=None)
    ap.add_argument("--sets", nargs="*", default=list(PROMPT_SETS))
    ap.add_argument("--limit", type=int, default=None, help="first N rows of each set")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit-general", type=int, default=None, help="first N rows of pocket-general")
    ap.add_argument("--json", default=None, help="write the report here")
    ap.add_argument("--save-images", default=None)
    a = ap.parse_args(argv)
    res = evaluate(a.model, a.sets, a.limit, a.steps, threads=a.threads, save_images=a.save_images,
                   limit_general=a.limit_general)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
