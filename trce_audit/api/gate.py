"""Gate CI on an audit's attack-success rates (reads the store only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..audit.spec import GateSpec, load_spec
from ..errors import ConfigError, StoreError
from ..gating.check import BOUNDS, SEED_AGGREGATES, GateDataError, GateResult, check_limit, check_regression, load_baseline_file
from ..gating.junit import write_junit
from ..gating.limits import AsrLimit, format_percent, parse_asr_limit, parse_points
from ..parsing import row_id
from ..reports.collect import collect
from ..store import Store
from ..workspace import user_path

__all__ = ["check_gate", "format_percent", "write_junit"]


def _baseline_rows(store: Store, baseline: str) -> list[dict[str, Any]]:
    text = baseline.strip()
    if text.isascii() and text.isdigit():
        number = row_id(text)
        try:
            store.get_run(number if number is not None else -1)
        except StoreError:
            raise GateDataError(f"baseline audit run {text[:40]} does not exist in the store") from None
        return [row.as_dict() for row in collect(store, audit_id=number).rows]
    return load_baseline_file(user_path(text))


def _stored_gate_spec(config: dict[str, Any]) -> GateSpec:
    """The [gate] table of the audit spec an audit ran with (its run config holds AuditSpec.as_dict())."""
    table = config.get("gate") if isinstance(config, dict) else None
    return GateSpec.from_mapping(table, "audit run config gate") if isinstance(table, dict) else GateSpec()


def check_gate(
    store: Store,
    *,
    audit_id: int | None = None,
    max_asr: Sequence[str | AsrLimit] = (),
    baseline: str | None = None,
    max_increase: str | float | None = None,
    spec: str | Path | None = None,
    bound: str = "value",
    seed_aggregate: str = "worst",
) -> GateResult:
    """Check an audit (default: the latest) against ASR limits and/or a baseline.

    Options given here win; what they leave unset comes from the ``[gate]`` table of ``spec`` (an audit
    spec file or text) or, without a spec, of the spec stored in the audit run's config. ``bound``
    ("value" or "upper") picks what ASR limits check: each row's value or its 95% interval's upper end;
    ``seed_aggregate`` ("worst" or "mean") what they check of an eraser trained under several seeds.
    """
    if bound not in BOUNDS:
        raise ConfigError(f"--bound {bound!r} is not one of: {', '.join(BOUNDS)}")
    if seed_aggregate not in SEED_AGGREGATES:
        raise ConfigError(f"--seed-aggregate {seed_aggregate!r} is not one of: {', '.join(SEED_AGGREGATES)}")
    limits = [item if isinstance(item, AsrLimit) else parse_asr_limit(item) for item in max_asr]
    increase = None if max_increase is None else parse_points(max_increase)
    if increase is not None and baseline is None and spec is None:
        raise ConfigError("--max-increase needs --baseline (an audit run id or a JSON file from gate/report --json)")
    if spec is not None:
        gate_spec = load_spec(spec).gate
    view = collect(store, audit_id=audit_id)
    assert view.audit is not None
    if view.audit.status != "complete":
        raise GateDataError(f"audit {view.audit.id} is {view.audit.status}; the gate needs a complete audit")
    if spec is None:
        gate_spec = _stored_gate_spec(view.audit.config)
    limits = limits or list(gate_spec.max_asr)
    baseline = baseline or gate_spec.baseline
    increase = increase if increase is not None else gate_spec.max_increase
    if baseline is not None and increase is None:
        raise ConfigError("--baseline needs --max-increase POINTS (how far ASR may rise, in percentage points)")
    if not limits and baseline is None:
        raise ConfigError("no limits to check: give --max-asr SET=VALUE, --baseline with --max-increase, or --spec with a [gate] table")
    if not view.asr_rows:
        raise GateDataError(f"audit {view.audit.id} has no ASR measurements to gate on")

    checks = [check_limit(view, limit, bound, seed_aggregate) for limit in limits]
    if baseline is not None and increase is not None:
        checks += check_regression(view, _baseline_rows(store, baseline), increase, baseline)
    return GateResult(view, checks, baseline)
