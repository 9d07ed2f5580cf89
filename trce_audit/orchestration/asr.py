"""Reading attack-success rates back from an evaluation's result."""

from __future__ import annotations

from typing import Any


def asr(result: dict[str, Any], scorer: str | None = None) -> float | None:
    """The ASR ``scorer`` gave (exactly, else one of its presets ``runner:preset``), else the first."""
    rates = [(metric.get("scorer") or "", metric.get("value")) for metric in result.get("metrics", []) if metric.get("name") == "asr"]
    if scorer is None:
        return rates[0][1] if rates else None
    for matches in (lambda named: named == scorer, lambda named: named.startswith(f"{scorer}:")):
        for named, value in rates:
            if matches(named):
                return value
    return None


def asr_by_scorer(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """{scorer: {"before": ASR, "after": ASR}} for every scorer (and the judge) the evals stored."""
    table: dict[str, dict[str, float | None]] = {}
    for when, result in (("before", before), ("after", after)):
        for metric in (result or {}).get("metrics", []):
            if metric.get("name") == "asr":
                table.setdefault(metric.get("scorer") or "", {"before": None, "after": None})[when] = metric.get("value")
    return table


def scored_n(result: dict[str, Any]) -> int | None:
    """How many images the first ASR was measured on."""
    for metric in result.get("metrics", []):
        if metric.get("name") == "asr" and metric.get("n") is not None:
            return int(metric["n"])
    return None
