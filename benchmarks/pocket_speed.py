"""Time loading the shipped pocket model and generating 64 images at 30 steps with CFG on CPU.

    python benchmarks/pocket_speed.py [--threads 2] [--repeats 3]

Target: <= 15 s for load + 64 images (2 threads).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from trce_audit.pocket.prompts import pocket_prompt_set  # noqa: E402
from trce_audit.pocket_eval.evaluate import generate, pocket_pipeline  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = pocket_prompt_set("pocket-general")[:64]
    t0 = time.perf_counter()
    pipe = pocket_pipeline(a.model)
    t_load = time.perf_counter() - t0
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        imgs = generate(pipe, rows, steps=30, batch_size=64)
        times.append(time.perf_counter() - t)
    res = {"threads": a.threads, "load_s": round(t_load, 2), "generate_64x30_s": [round(x, 2) for x in times],
           "best_total_s": round(t_load + min(times), 2), "images": list(imgs.shape),
           "cpu_count": os.cpu_count(), "loadavg": os.getloadavg()}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
