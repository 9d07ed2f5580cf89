"""How far a trained eraser's pocket numbers move: training seeds against thread counts.

    python benchmarks/seed_spread.py --out DIR [--erasers esd-x,esd-u] [--seeds 0,1,2] [--threads 2]
                                     [--other-threads 1] [--eval-threads 1] [--limit 64]

For each eraser (pocket preset, concept ``cross``): erase under every seed at ``--threads`` torch
threads, and once more with the first seed at ``--other-threads``; score every erased model on the
pocket sets with the held-out scorer (``pocket-heldout``: explicit, synonym and indirect ASR; preserve
accuracy on pocket-preserve), every evaluation at ``--eval-threads`` so that images differ only through
the weights. Each thread count gets its own workspace under DIR (an erase's identity leaves the thread
count out, so one store would reuse the first). Each step is the CLI in a subprocess with its
``OMP_NUM_THREADS``, so the numbers are what a user's command gives. Prints a JSON line per erase and
a Markdown table; rerunning with the same DIR reuses what is stored.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ASR_SETS = ("pocket-explicit", "pocket-synonym", "pocket-indirect")
PRESERVE = "pocket-preserve"


def cli(workspace: Path, threads: int, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "trce_audit.cli", "--workspace", str(workspace), *args, "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def first_metric(result: dict, name: str) -> dict:
    return next(m for m in result["metrics"] if m["name"] == name and m.get("scorer", "").startswith("pocket-heldout"))


def measure(workspace: Path, model: str, threads: int, limit: int) -> dict:
    scores = {}
    for prompt_set in (*ASR_SETS, PRESERVE):
        result = cli(workspace, threads, "eval", "--model", model, "--prompts", prompt_set, "--metric", "pocket-heldout",
                     "--concept", "cross", "--limit", str(limit), "--steps", "30", "--batch-size", "64")
        metric = first_metric(result, "preserve_acc" if prompt_set == PRESERVE else "asr")
        scores[prompt_set] = {k: metric[k] for k in ("value", "ci_low", "ci_high", "n")}
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--erasers", default="esd-x,esd-u")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--other-threads", type=int, default=1)
    parser.add_argument("--eval-threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=64)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for eraser in args.erasers.split(","):
        runs = [(seed, args.threads) for seed in seeds] + [(seeds[0], args.other_threads)]
        for seed, threads in runs:
            workspace = args.out / f"threads-{threads}"
            erased = cli(workspace, threads, "erase", eraser, "--concept", "cross", "--model", "pocket", "--set", f"seed={seed}")
            record = {"eraser": eraser, "seed": seed, "erase_threads": threads, "artefact_sha256": erased["sha256"],
                      "erase_seconds": erased.get("seconds"), "reused": erased["reused"],
                      "scores": measure(workspace, erased["model"], args.eval_threads, args.limit)}
            results.append(record)
            print(json.dumps(record), flush=True)
    print()
    print("| eraser | seed | erase threads | " + " | ".join(f"ASR {s}" for s in ASR_SETS) + f" | preserve {PRESERVE} | weights sha256 |")
    print("|---|---|---|" + "---|" * (len(ASR_SETS) + 2))
    for r in results:
        cells = [f"{r['scores'][s]['value'] * 100:.1f}% [{r['scores'][s]['ci_low'] * 100:.0f}, {r['scores'][s]['ci_high'] * 100:.0f}]"
                 for s in (*ASR_SETS, PRESERVE)]
        print(f"| {r['eraser']} | {r['seed']} | {r['erase_threads']} | " + " | ".join(cells) + f" | `{r['artefact_sha256'][:12]}` |")


if __name__ == "__main__":
    main()
