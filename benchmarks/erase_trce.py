"""Time TRCE on a random-weight model: stage 1, stage-2 trajectory sampling, and seconds per stage-2
iteration (the reference code's cost: one H200 ran a reference-style stage-2 iteration in 0.80 s).

    python benchmarks/erase_trce.py --shape sd14 --device cuda --iterations 20
    python benchmarks/erase_trce.py --shape tiny --iterations 5      # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Generic captions for the stage-1 prior: timing only, the content does not matter.
SUBJECTS = ("a dog", "two people", "a red bus", "a bowl of fruit", "a cat", "a man", "a kitchen", "a train")
PLACES = ("on a couch", "in a park", "on a street", "on a table", "at the beach", "in the snow")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("tiny", "sd14"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=5, help="stage-2 iterations to time")
    parser.add_argument("--mode", choices=("default", "reference"), default="default")
    parser.add_argument("--batch-size", type=int, default=8, help="trajectories per UNet call")
    parser.add_argument("--n-uncond", type=int, default=8)
    parser.add_argument("--captions", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from trce_audit.data.concepts import Concept
    from trce_audit.erasers.base import EraseContext
    from trce_audit.erasers.trce import TRCE
    from trce_audit.erasers.trce.stage1 import run_stage1
    from trce_audit.erasers.trce.stage2 import run_stage2
    from trce_audit.erasers.common import frozen_copy
    from trce_audit.models.tiny import build_pipeline

    torch.set_num_threads(args.threads)
    concept = Concept("bench", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
    captions = [f"{s} {p}" for s in SUBJECTS for p in PLACES][: args.captions]
    overrides = {"iterations": args.iterations, "mode": args.mode, "images_per_prompt": 2, "n_uncond": args.n_uncond, "concept_num": 2}
    if args.shape == "tiny":
        overrides.update(latent_size=8)
    config = TRCE.make_config(overrides=overrides)
    started = time.perf_counter()
    pipe = build_pipeline(args.shape).to(args.device)
    build_s = time.perf_counter() - started
    marks: dict[str, list[float]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        marks.setdefault(stage, []).append(time.perf_counter())

    with tempfile.TemporaryDirectory() as cache:
        context = EraseContext(
            cache_dir=Path(cache), device=args.device, progress=progress, captions=lambda name, limit: captions,
            batch_size=args.batch_size,
        )
        original = frozen_copy(pipe.unet)
        t0 = time.perf_counter()
        run_stage1(pipe, concept, config, context)
        stage1_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats, _ = run_stage2(pipe, original, concept, config, context)
        stage2_s = time.perf_counter() - t0
    its = marks.get("stage 2: fine-tuning", [])
    traj = marks.get("stage 2: trajectories", [])
    per_iteration = (its[-1] - its[0]) / (len(its) - 1) if len(its) > 1 else None  # excludes the first (warm-up)
    report = {
        "shape": args.shape,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "mode": args.mode,
        "build_s": round(build_s, 3),
        "stage1_s": round(stage1_s, 3),
        "trajectories_s": round(traj[-1] - traj[0], 3) if len(traj) > 1 else None,
        "stage2_s": round(stage2_s, 3),
        "stage2_iterations": stats["iterations"],
        "stage2_s_per_iteration": round(per_iteration, 4) if per_iteration else None,
        "reg_batch_size": config.reg_batch_size,
        "reference_h200_s_per_iteration": 0.80,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
