"""Stored calibration figures of the pocket scorers (written by benchmarks/pocket_calibration.py)."""

from __future__ import annotations

import json
from pathlib import Path

from .detector import WEIGHTS_DIR

CALIBRATION_PATH = WEIGHTS_DIR / "calibration.json"


def calibration_key(scorer: str, version: str, weights_sha256: str) -> str:
    return f"{scorer}@{version}@{weights_sha256}"


def stored_counts(scorer: str, version: str, weights_sha256: str, label: str,
                  path: str | Path = CALIBRATION_PATH) -> dict | None:
    """Overall confusion counts for ``label`` measured for exactly these weights, or None."""
    path = Path(path)
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get(calibration_key(scorer, version, weights_sha256))
    if not entry or entry.get("weights_sha256") != weights_sha256:
        return None
    counts = entry["by_kind"].get(label)
    return dict(counts, set_seed=entry["set_seed"], command=entry["command"]) if counts else None
