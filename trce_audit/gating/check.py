"""Check an AuditView against limits.

The number checked for a row is its *gated ASR*: the after-attack ASR for an attack row, the plain ASR
otherwise. A limit covers the audited models (the erased ones when the audit erased any: the unerased base
model is the reference and is only checked when a limit names it with ``SET@MODEL``), and the rows of its
prompt set (``*``: every prompt set with an ASR; an attack row belongs to its seed prompt set). It passes
when the worst (largest) gated ASR it covers is at most its value. With ``bound="upper"`` the number
checked is the upper end of each row's 95% interval (``ci_high``) instead of its point value, so a
small sample cannot pass a limit its interval does not clear.

An eraser an audit trained under several seeds has one row per seed: a limit checks the worst seed,
or with ``seed_aggregate="mean"`` the mean over the seeds of each (eraser, prompt set, attack).

A regression check compares rows matched by (model key, prompt set, attack) with a baseline, one check
per prompt set: it passes when no matched row's gated ASR rose by more than the allowed points.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError
from ..reports.collect import AuditView, Row
from .limits import ALL_SETS, AsrLimit, format_percent

BOUNDS = ("value", "upper")
SEED_AGGREGATES = ("worst", "mean")
_BOUND_WORDS = {"value": "ASR", "upper": "ASR upper 95% bound"}
_TOLERANCE = 1e-9  # ASR values are ratios of counts; don't fail 1/20 against 5% on float rounding


class GateDataError(DataError):
    """The limits or the baseline do not fit the audit (exit 2, not a failed gate)."""


@dataclass
class CheckResult:
    name: str
    kind: str  # "max_asr" or "max_increase"
    passed: bool
    limit: float
    observed: float
    message: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    bound: str = "value"  # which number of each row was checked: its value or its interval's upper end

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "bound": self.bound,
            "passed": self.passed,
            "limit": self.limit,
            "observed": self.observed,
            "message": self.message,
            "rows": self.rows,
        }


@dataclass
class GateResult:
    view: AuditView
    checks: list[CheckResult]
    baseline_source: str | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def as_dict(self) -> dict[str, Any]:
        # The view's rows are included so that this JSON can serve as the next run's --baseline.
        return {
            **self.view.as_dict(),
            "passed": self.passed,
            "exit_code": self.exit_code,
            "baseline": self.baseline_source,
            "checks": [check.as_dict() for check in self.checks],
        }


def _row_record(row: Row, value: float, **extra: Any) -> dict[str, Any]:
    return {"model": row.model.key, "prompt_set": row.prompt_set, "attack": row.attack, "asr": value, **extra}


def _describe(row: Row) -> str:
    where = f"{row.model.key} on {row.prompt_set}"
    return f"{where} after {row.attack}" if row.attack else where


def rows_for(view: AuditView, limit: AsrLimit) -> list[Row]:
    """The rows a limit covers; a limit naming a set or model the audit lacks is a data error."""
    rows = view.asr_rows
    sets = sorted({row.prompt_set for row in rows})
    if limit.prompt_set != ALL_SETS and limit.prompt_set not in sets:
        raise GateDataError(
            f"limit {limit.target} names prompt set {limit.prompt_set!r}, which has no ASR in audit "
            f"{view.audit_run_id} (sets: {', '.join(sets) or 'none'})"
        )
    if limit.model is not None:
        models = [model for model in view.models if model.matches(limit.model)]
        if not models:
            raise GateDataError(
                f"limit {limit.target} names model {limit.model!r}, which audit {view.audit_run_id} lacks "
                f"(models: {', '.join(m.key for m in view.models) or 'none'})"
            )
    else:
        models = view.audited_models
    keys = {model.key for model in models}
    covered = [row for row in rows if row.model.key in keys and limit.prompt_set in (ALL_SETS, row.prompt_set)]
    if not covered:
        raise GateDataError(f"limit {limit.target}: audit {view.audit_run_id} has no ASR for it")
    return covered


def bound_value(row: Row, bound: str) -> float:
    """The number of a row's gated ASR that a limit is checked against."""
    gated = row.gated_asr
    assert gated is not None
    if bound == "value":
        return gated.value
    if gated.ci_high is None:
        raise GateDataError(f"{_describe(row)} has no interval, so --bound upper cannot check it")
    return gated.ci_high


def _checked(covered: list[Row], bound: str, seed_aggregate: str) -> list[tuple[str, float, list[tuple[Row, float]]]]:
    """(what is checked, its number, the rows and numbers behind it): each row alone, except that under
    ``mean`` the seeds of one eraser on one prompt set and attack are checked as their mean."""
    values = [(row, bound_value(row, bound)) for row in covered]
    if seed_aggregate == "worst":
        return [(_describe(row), value, [(row, value)]) for row, value in values]
    groups: dict[tuple[str, str, str | None], list[tuple[Row, float]]] = {}
    for row, value in values:
        group = row.model.group_key if row.model.seed is not None else row.model.key
        groups.setdefault((group, row.prompt_set, row.attack), []).append((row, value))
    checked = []
    for (group, prompt_set, attack), members in groups.items():
        if len(members) == 1:
            checked.append((_describe(members[0][0]), members[0][1], members))
            continue
        where = f"{group} on {prompt_set}" + (f" after {attack}" if attack else "")
        checked.append((f"{where} (mean of {len(members)} seeds)", sum(v for _, v in members) / len(members), members))
    return checked


def check_limit(view: AuditView, limit: AsrLimit, bound: str = "value", seed_aggregate: str = "worst") -> CheckResult:
    if bound not in BOUNDS:
        raise GateDataError(f"unknown bound {bound!r}; known: {', '.join(BOUNDS)}")
    if seed_aggregate not in SEED_AGGREGATES:
        raise GateDataError(f"unknown seed aggregate {seed_aggregate!r}; known: {', '.join(SEED_AGGREGATES)}")
    checked = _checked(rows_for(view, limit), bound, seed_aggregate)
    worst_what, worst, _ = max(checked, key=lambda item: item[1])
    over = [(what, value) for what, value, _ in checked if value > limit.max_asr + _TOLERANCE]
    what = _BOUND_WORDS[bound]
    if over:
        message = f"{limit.target}: {what} {format_percent(worst)} exceeds {format_percent(limit.max_asr)} (" + "; ".join(
            f"{where} {format_percent(value)}" for where, value in sorted(over, key=lambda item: -item[1])
        ) + ")"
    else:
        message = f"{limit.target}: worst {what} {format_percent(worst)} ({worst_what}) within {format_percent(limit.max_asr)}"
    qualifiers = [q for q in ("upper bound" if bound == "upper" else "", "seed mean" if seed_aggregate == "mean" else "") if q]
    return CheckResult(
        name=limit.name + (f" ({', '.join(qualifiers)})" if qualifiers else ""),
        kind="max_asr",
        passed=not over,
        limit=limit.max_asr,
        observed=worst,
        message=message,
        rows=[
            _row_record(row, row.gated_asr.value, over=checked_value > limit.max_asr + _TOLERANCE,  # type: ignore[union-attr]
                        **({"ci_high": value} if bound == "upper" else {}),
                        **({"seed": row.model.seed, "seed_mean": checked_value} if len(members) > 1 else {}))
            for _, checked_value, members in checked for row, value in members
        ],
        bound=bound,
    )


def check_regression(view: AuditView, baseline_rows: Sequence[dict[str, Any]], max_increase: float, source: str) -> list[CheckResult]:
    """One check per prompt set that both the audit and the baseline have gated rows for."""
    baseline = {}
    for record in baseline_rows:
        if record.get("gated_asr") is not None:
            baseline[(record.get("model"), record.get("prompt_set"), record.get("attack"))] = float(record["gated_asr"])
    audited = {model.key for model in view.audited_models}
    by_set: dict[str, list[tuple[Row, float, float]]] = {}
    for row in view.asr_rows:
        if row.model.key in audited and row.key in baseline:
            by_set.setdefault(row.prompt_set, []).append((row, row.gated_asr.value, baseline[row.key]))  # type: ignore[union-attr]
    if not by_set:
        raise GateDataError(f"baseline {source} shares no (model, prompt set, attack) row with audit {view.audit_run_id}")
    checks = []
    points = max_increase * 100
    for prompt_set in sorted(by_set):
        matched = by_set[prompt_set]
        worst_row, worst_now, worst_then = max(matched, key=lambda item: item[1] - item[2])
        increase = worst_now - worst_then
        over = [item for item in matched if item[1] - item[2] > max_increase + _TOLERANCE]
        if over:
            message = f"{prompt_set}: ASR rose more than {points:g} points vs baseline (" + "; ".join(
                f"{_describe(row)} {format_percent(then)} -> {format_percent(now)}" for row, now, then in over
            ) + ")"
        else:
            message = (
                f"{prompt_set}: largest change {increase * 100:+.1f} points ({_describe(worst_row)}) "
                f"within +{points:g} points of baseline"
            )
        checks.append(
            CheckResult(
                name=f"max_increase[{prompt_set}] <= {points:g} points",
                kind="max_increase",
                passed=not over,
                limit=max_increase,
                observed=increase,
                message=message,
                rows=[_row_record(row, now, baseline=then, increase=now - then) for row, now, then in matched],
            )
        )
    return checks


def load_baseline_file(path: Path) -> list[dict[str, Any]]:
    """Rows from a JSON file written by `gate --json` or `report --json`."""
    if not os.path.isfile(path):  # False, not an OSError, for a name too long to be a file
        raise GateDataError(f"baseline file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GateDataError(f"baseline file {path} is not JSON: {exc}") from None
    except RecursionError:
        raise GateDataError(f"baseline file {path} is not JSON: nested deeper than the parser goes") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if rows is None and isinstance(data, dict) and isinstance(data.get("audit"), dict):
        rows = data["audit"].get("rows")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise GateDataError(f"baseline file {path} has no 'rows' list (write it with `gate --json` or `report --json`)")
    for number, row in enumerate(rows, start=1):
        _check_baseline_row(path, number, row)
    return rows


def _check_baseline_row(path: Path, number: int, row: dict[str, Any]) -> None:
    """A row matches the audit's by (model, prompt set, attack), all text, and carries its gated ASR as a
    rate 0-1 or null: anything else (a string, NaN) would fail or pass the comparison by accident."""
    for key in ("model", "prompt_set", "attack"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise GateDataError(f"baseline file {path}: row {number}: {key!r} must be text, got {json.dumps(row[key])[:40]}")
    asr = row.get("gated_asr")
    if asr is not None and (isinstance(asr, bool) or not isinstance(asr, (int, float)) or not 0.0 <= asr <= 1.0):
        raise GateDataError(f"baseline file {path}: row {number}: 'gated_asr' must be a rate from 0 to 1 or null, got {json.dumps(asr)[:40]}")
    if asr is not None:
        row["gated_asr"] = float(asr)
