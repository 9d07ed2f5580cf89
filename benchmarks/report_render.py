"""Time `report` and `gate` on the hand-built test audit with its images replaced by 512 px ones.

Run: PYTHONPATH=. python benchmarks/report_render.py [--max-images 12]
Prints the collect/render times and the report size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-images", type=int, default=12)
    args = parser.parse_args()

    from test_report_store import build_audit

    from trce_audit.api import check_gate, render_report
    from trce_audit.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = Store(f"sqlite:///{root / 'db.sqlite'}")
        built = build_audit(store, root / "images")
        # Replace the 32 px test images with smooth 512 px ones (JPEG-friendly, like generated images).
        rng = np.random.default_rng(0)
        ramp = np.linspace(0, 255, 512, dtype=np.float32)
        for path in (root / "images").glob("*.png"):
            base = (ramp[None, :, None] * rng.uniform(0.3, 1.0, 3) + ramp[:, None, None] * rng.uniform(0, 0.5, 3)) % 256
            noise = rng.normal(0, 6, (512, 512, 3))
            Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path)
        t0 = time.perf_counter()
        result = render_report(store, root / "report.html", max_images=args.max_images)
        t1 = time.perf_counter()
        check_gate(store, audit_id=built.audit_id, max_asr=["*=50%"])
        t2 = time.perf_counter()
        stats = result["report"]
        print(f"report: {t1 - t0:.2f} s, {stats['bytes'] / 1024:.0f} KiB, {stats['n_images']} thumbnails from 512 px PNGs")
        print(f"gate:   {t2 - t1:.2f} s")
        store.close()


if __name__ == "__main__":
    main()
