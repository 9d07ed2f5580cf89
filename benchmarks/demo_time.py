"""Where the default audit's time goes: run `trce-audit audit` (the shipped pocket spec) in a fresh
workspace, time it, and give each step's share, read from its numbered step lines.

    python benchmarks/demo_time.py [--workspace DIR] [--threads N]

Prints one line per step (seconds, share of the audit, the step), then the totals grouped by kind
(erase per eraser, eval, attack per attack), the wall time and the peak RSS of the audit process.
A step lasts from its line to the next step's line (or the end).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

STEP = re.compile(r"^\[(\d+)\] (?!still on )(.+) \(([\d.]+) (s|min) elapsed\)$")


def seconds(value: str, unit: str) -> float:
    return float(value) * (60.0 if unit == "min" else 1.0)


def kind(step: str) -> str:
    head, _, rest = step.partition(": ")
    if head in ("erase", "attack"):
        return f"{head} {rest.split(' ', 1)[0]}"
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=None, help="[a fresh temporary folder]")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the audit [as set]")
    args = parser.parse_args()
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="trce-demo-"))
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    command = [sys.executable, "-m", "trce_audit", "--workspace", str(workspace), "audit", "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the audit failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    steps = [(m.group(2), seconds(m.group(3), m.group(4))) for line in done.stderr.splitlines() if (m := STEP.match(line))]
    ends = [t for _, t in steps[1:]] + [wall]
    by_kind: dict[str, float] = defaultdict(float)
    for (step, began), ended in zip(steps, ends):
        took = max(0.0, ended - began)
        by_kind[kind(step)] += took
        print(f"{took:7.1f} s {100 * took / wall:5.1f}%  {step}")
    print()
    for name, took in sorted(by_kind.items(), key=lambda item: -item[1]):
        print(f"{took:7.1f} s {100 * took / wall:5.1f}%  {name}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    print(f"\nwall {wall:.1f} s ({wall / 60:.2f} min), {len(steps)} steps, peak RSS {peak:.2f} GiB, workspace {workspace}")


if __name__ == "__main__":
    main()
