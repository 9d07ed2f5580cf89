"""What the held-out pocket scorer adds to a pocket eval's wall time (target: <= 10%).

    python benchmarks/pocket_heldout_cost.py [--limit 64]

Runs, in one invocation and each in a fresh workspace (nothing reused), ``trce-audit eval --model pocket
--prompts pocket-explicit --limit N`` with ``--metric pocket`` and with ``--metric pocket --metric
pocket-heldout``, one thread, and prints both wall times and their ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_eval(metrics: list[str], limit: int) -> float:
    cli = Path(sys.executable).with_name("trce-audit")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as ws:
        cmd = [str(cli), "--workspace", ws, "eval", "--model", "pocket", "--prompts", "pocket-explicit",
               "--limit", str(limit), "--json"]
        for m in metrics:
            cmd += ["--metric", m]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=64)
    a = ap.parse_args()
    alone = timed_eval(["pocket"], a.limit)
    both = timed_eval(["pocket", "pocket-heldout"], a.limit)
    print(f"pocket eval of {a.limit} images: pocket only {alone:.1f}s, pocket + pocket-heldout {both:.1f}s, "
          f"ratio {both / alone:.3f}")


if __name__ == "__main__":
    main()
