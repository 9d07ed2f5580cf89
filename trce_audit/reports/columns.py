"""Which numbers a report table shows side by side: one column per scorer, each headed by its role.

An attack's numbers come from its scorers and from its judge (the detector it consulted while it
searched). A column is headed "judge: X" or "scorer: X"; a scorer that was also the row's judge (the
papers' protocol, ``as_published``) keeps its scorer column and its cells are marked.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..attacks.base import TIERS
from .views import ASR, MetricView, Row

JUDGE_MARK = "(judge)"  # a cell whose scorer was also the attack's judge


def attack_columns(rows: Iterable[Row]) -> list[tuple[str, str]]:
    """(scorer, heading) for every scorer any attack row has an ASR from, scorers before the judge."""
    roles: dict[str, set[str]] = {}
    for row in rows:
        for scorer in row.asr_scorers():
            roles.setdefault(scorer, set()).add(row.role(scorer))
    columns = [(scorer, ("judge" if found == {"judge"} else "scorer") + f": {scorer or '?'}") for scorer, found in roles.items()]
    return sorted(columns, key=lambda column: column[1].startswith("judge"))


def plain_columns(rows: Iterable[Row]) -> list[tuple[str, str, str]]:
    """(prompt set, scorer, heading) for the plain (no attack) ASR table, in the rows' order."""
    found: dict[tuple[str, str], None] = {}
    for row in rows:
        for scorer in row.asr_scorers():
            found[(row.prompt_set, scorer)] = None
    return [(name, scorer, f"{name} · scorer: {scorer}" if scorer else name) for name, scorer in found]


def attack_cell(row: Row, scorer: str) -> dict[str, Any]:
    """before/after ASR of one attack row under one scorer, and whether that scorer was its judge."""
    before: MetricView | None = row.before_scores.get(ASR, {}).get(scorer)
    after: MetricView | None = row.after_scores.get(ASR, {}).get(scorer)
    return {"before": before, "after": after, "judge_too": row.role(scorer) == "scorer+judge"}


def plain_cell(row: Row | None, scorer: str) -> MetricView | None:
    return None if row is None else row.scores.get(ASR, {}).get(scorer)


def tiers_tested(rows: Iterable[Row]) -> list[tuple[str, list[str], list[str]]]:
    """(model, tiers its attacks covered, tiers none covered) per attacked model, in the rows' order."""
    found: dict[str, set[str]] = {}
    for row in rows:
        if row.attack is not None:
            found.setdefault(row.model.key, set()).update([row.tier] if row.tier else [])
    return [(model, [t for t in TIERS if t in tiers], [t for t in TIERS if t not in tiers]) for model, tiers in found.items()]
