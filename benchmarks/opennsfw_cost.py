"""What adding OpenNSFW to a NudeNet evaluation costs on the CPU: the scoring time of ``--metric nudenet``
against ``--metric nudenet,opennsfw`` over the same stored images, each in a fresh store.

    PYTHONPATH=. python benchmarks/opennsfw_cost.py [--n 64] [--size 512]

The images are ``--n`` PNGs of ``--size`` px (SD 1.4's output size by default) cut from scikit-image's
sample photographs at shifted offsets and zooms, so no two are the same. Both scorings run as eval does
(metrics.base.detect_together, then each runner's score: one read of each image, every NudeNet preset,
every OpenNSFW preset) after each detector has loaded its ONNX session on one other image: the
sessions' start-up is printed apart. The machine's load average is printed with the numbers, since
other work on a shared CPU slows both; so are the process's CPU seconds, which it inflates less.
benchmarks/opennsfw_profile.py splits the cost by step.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from trce_audit.hashing import sha256_file
from trce_audit.metrics.base import detect_together
from trce_audit.registry import load
from trce_audit.store import PromptRow, Store
from trce_audit.workspace import Workspace

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "cat", "retina")


def photographs(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = [np.asarray(getattr(data, name)())[..., :3] for name in PHOTOS]
    found = []
    for i in range(n):
        source = sources[i % len(sources)]
        side = int(min(source.shape[:2]) * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, source.shape[0] - side + 1), rng.integers(0, source.shape[1] - side + 1)
        crop = Image.fromarray(source[top : top + side, left : left + side]).resize((size, size), Image.Resampling.BICUBIC)
        found.append(np.asarray(crop))
    return found


def stored(root: Path, arrays: list[np.ndarray]):
    """A fresh workspace whose store holds ``arrays`` as one generation run, and its images."""
    workspace = Workspace.from_options(root, None, None).ensure()
    store = Store(workspace.db_url)
    set_id = store.add_prompt_set("photos", [PromptRow(f"photo {i}", seed=i) for i in range(len(arrays))], source="benchmark")
    run = store.start_run(kind="generate", component="benchmark-photos", config={}, prompt_set_id=set_id)
    records = []
    for row, array in zip(store.prompt_rows(set_id), arrays):
        path = root / "photos" / f"{row.idx:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        records.append(dict(prompt_id=row.id, sample_hash=f"photo-{row.idx}", image_path=str(path), image_sha256=sha256_file(path)))
    store.add_generations(run.id, records)
    return store, store.generated_images(run.id)


def scoring_seconds(root: Path, arrays: list[np.ndarray], metrics: list[str], warm: Path) -> tuple[float, float, float]:
    """(session start-up, scoring, scoring's CPU) seconds of an eval's scoring with ``metrics`` in a
    fresh store. The CPU seconds are the process's, every thread's: other jobs on the machine inflate
    them less than the wall time (not at all, were it not for the caches and the sessions' spinning)."""
    store, images = stored(root, arrays)
    runners = [load("metric", name).from_options({}) for name in metrics]
    start = time.perf_counter()
    for runner in runners:  # each detector loads its session on one image that is not measured
        runner.detect([type("Warm", (), {"image_path": str(warm)})()])
    loaded = time.perf_counter()
    run_id = store.start_run(kind="eval", component="+".join(metrics), config={}).id
    cpu = time.process_time()
    detect_together(store, run_id, images, runners)
    for runner in runners:
        runner.score(store, run_id, images)
    done, cpu = time.perf_counter(), time.process_time() - cpu
    store.close()
    return loaded - start, done - loaded, cpu


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    arrays = photographs(args.n + 1, args.size)
    root = Path(tempfile.mkdtemp(prefix="opennsfw-cost-"))
    warm = root / "warm.png"
    Image.fromarray(arrays.pop()).save(warm)
    load_before = os.getloadavg()
    nudenet = scoring_seconds(root / "nudenet", arrays, ["nudenet"], warm)
    both = scoring_seconds(root / "both", arrays, ["nudenet", "opennsfw"], warm)
    report = {
        "images": args.n, "size": args.size, "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "nudenet_s": round(nudenet[1], 2), "nudenet_opennsfw_s": round(both[1], 2),
        "added": round(both[1] / nudenet[1] - 1, 3),
        "nudenet_cpu_s": round(nudenet[2], 2), "nudenet_opennsfw_cpu_s": round(both[2], 2),
        "added_cpu": round(both[2] / nudenet[2] - 1, 3),
        "session_startup_s": {"nudenet": round(nudenet[0], 2), "nudenet+opennsfw": round(both[0], 2)},
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
