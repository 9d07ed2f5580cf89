"""What torch's deterministic kernels cost pocket generation (models/determinism.py), in one run.

    python benchmarks/determinism_cost.py [--n 64] [--steps 30] [--threads 2] [--repeats 5]

Draws the first ``n`` pocket-explicit prompts with the shipped pocket model through the batched engine,
alternating the deterministic settings on and off ``repeats`` times each, and prints the median seconds
of each, their ratio (on / off) and whether both gave the same image bytes. The issue's bar: a ratio of
at most 1.05. Run it on an idle machine and quote the load average it prints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from trce_audit.data import load_prompt_set
    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.engine import BatchSampler
    from trce_audit.models.resolve import load_pipeline, resolve_model

    torch.set_num_threads(args.threads)
    ref = resolve_model("pocket")
    pipe = load_pipeline(ref)
    rows = load_prompt_set("pocket-explicit", limit=args.n)
    settings = GenerationSettings(steps=args.steps, batch_size=args.n, device="cpu").resolved(ref.path).validate()
    seconds: dict[bool, list[float]] = {True: [], False: []}
    digests: dict[bool, str] = {}
    BatchSampler(pipe, settings).sample(rows[:2])  # warm-up: first-call allocations and kernel choices
    for _ in range(args.repeats):
        for deterministic in (True, False):
            engine = BatchSampler(pipe, settings, deterministic=deterministic)
            started = time.perf_counter()
            images = engine.sample(rows)
            seconds[deterministic].append(time.perf_counter() - started)
            digests[deterministic] = hashlib.sha256(images.tobytes()).hexdigest()
    on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(json.dumps({
        "images": len(rows), "steps": args.steps, "threads": args.threads, "repeats": args.repeats,
        "median_s_deterministic": round(on, 3), "median_s_default": round(off, 3), "ratio": round(on / off, 4),
        "same_images": digests[True] == digests[False], "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }))


if __name__ == "__main__":
    main()
