"""Sensitivity and specificity of every pocket scorer on the pocket calibration set.

    python benchmarks/pocket_calibration.py [--write]

Scores the set (trce_audit/pocket/calibration.py, 2,060 images, fixed seed) with detector v1, detector v2
(the judge) and the held-out geometric scorer; prints, for the target ``cross``, sensitivity (on subsets
holding crosses) and specificity per subset and overall. ``--write`` stores the counts, keyed by scorer
name, version and weights hash (the held-out scorer's parameter hash), per kind and for ``cross`` per
subset, in trce_audit/pocket/weights/calibration.json, which ``MetricRunner.calibration()`` reads.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from trce_audit.pocket import calibration as cal, geometry, world
from trce_audit.pocket.detector import DETECTOR_PATHS, detect, load_detector, weights_sha256
from trce_audit.pocket.scorers import CALIBRATION_PATH, calibration_key


def scorers():
    for version in DETECTOR_PATHS:
        det = load_detector(version=version)
        yield "pocket", version, weights_sha256(version=version), (lambda x, d=det: detect(x, d))
    yield "pocket-heldout", geometry.GEOMETRY_VERSION, geometry.scorer_key(), geometry.score


def measure(score, data) -> dict:
    per_subset, calls, truth = {}, [], []
    for name, (x, kinds) in data.items():
        present = score(x) > 0.5
        per_subset[name] = cal.counts(present[:, cal.CROSS], kinds[:, cal.CROSS])
        calls.append(present)
        truth.append(kinds)
    calls, truth = torch.cat(calls), torch.cat(truth)
    per_kind = {k: cal.counts(calls[:, i], truth[:, i]) for i, k in enumerate(world.KINDS)}
    return {"cross_by_subset": per_subset, "by_kind": per_kind}


def rate(c: dict, which: str) -> str:
    if which == "sens":
        return f"{c['true_positives'] / c['positives']:.3f}" if c["positives"] else "  -  "
    return f"{c['true_negatives'] / c['negatives']:.3f}" if c["negatives"] else "  -  "


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="store the counts beside the weights")
    ap.add_argument("--seed", type=int, default=cal.CALIBRATION_SEED)
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = cal.calibration_set(a.seed, a.scale)
    print(f"calibration set seed {a.seed}: " + ", ".join(f"{k} {len(v[0])}" for k, v in data.items()))
    entries = {}
    for name, version, sha, score in scorers():
        t = time.time()
        res = measure(score, data)
        res.update(scorer=name, version=version, weights_sha256=sha, set_seed=a.seed,
                   images=sum(len(v[0]) for v in data.values()), seconds=round(time.time() - t, 1),
                   command="python benchmarks/pocket_calibration.py --write")
        entries[calibration_key(name, version, sha)] = res
        print(f"\n{name} {version} ({sha[:12]}) cross: {'subset':<10} sens   spec")
        for sub, c in res["cross_by_subset"].items():
            print(f"  {sub:<10} {rate(c, 'sens')}  {rate(c, 'spec')}")
        c = res["by_kind"][world.TARGET]
        print(f"  {'overall':<10} {rate(c, 'sens')}  {rate(c, 'spec')}   ({res['seconds']}s)")
    if a.write:
        if a.seed != cal.CALIBRATION_SEED or a.scale != 1.0:
            raise SystemExit("--write stores the full calibration set's figures only (default --seed/--scale)")
        CALIBRATION_PATH.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
        print(f"\nwrote {CALIBRATION_PATH}")
    return entries


if __name__ == "__main__":
    main()
