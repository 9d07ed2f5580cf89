"""Render an AuditView as one self-contained HTML file (inline CSS and SVG, images as data URIs, no script)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..store import Store
from .beside import audit_label, beside_lines
from .chart import asr_chart, condition
from .columns import JUDGE_MARK, attack_cell, attack_columns, plain_cell, plain_columns, tiers_tested
from .collect import (
    ASR,
    PRESERVATION_METRICS,
    AuditView,
    ImageView,
    MetricView,
    Row,
    counted_classes,
    flag_rule,
    images,
    prompt_seeds,
)
from .curves import curve_chart
from .tradeoff import tradeoff_chart
from .seeds import seed_spreads
from .text import visible
from .thumbs import thumbnail_data_uri
from .timing import SUM_NOTE, duration, time_spent

METRIC_TITLES = {"asr": "ASR", "fid": "FID", "clip_score": "CLIP score", "preserve_acc": "Preserve accuracy"}
LOWER_IS_BETTER = {"asr", "fid"}


@dataclass
class Tile:
    image: ImageView
    uri: str | None
    before: ImageView | None = None
    before_uri: str | None = None


@dataclass
class Grid:
    row: Row
    title: str
    tiles: list[Tile]
    total: int
    n_flagged: int
    anchor: str


@dataclass
class ReportOptions:
    unblur: bool = False
    max_images: int = 12
    title: str | None = None


def _environment() -> Environment:
    # Autoescape everything: prompts are attacker-chosen text; and show its control and bidi characters
    # as visible codes (finalize runs on every {{ value }} before it is escaped; a macro's Markup is the
    # template's own and passes as it is).
    env = Environment(loader=PackageLoader(__package__, "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True,
                      finalize=lambda value: visible(value) if isinstance(value, str) and not isinstance(value, Markup) else value)
    env.filters["pct"] = lambda value, digits=1: "—" if value is None else f"{value * 100:.{digits}f}%"
    env.filters["metric"] = format_metric
    env.filters["short"] = lambda value, n=12: "—" if not value else str(value)[:n]
    env.filters["when"] = lambda value: "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["duration"] = duration
    return env


def format_metric(metric: MetricView | None) -> str:
    if metric is None:
        return "—"
    if metric.name in ("asr", "preserve_acc"):
        return f"{metric.value * 100:.1f}%"
    return f"{metric.value:.4g}" if metric.name != "clip_score" else f"{metric.value:.3f}"


def _grid(store: Store, row: Row, max_images: int, index: int, fallback_rule: dict[str, Any]) -> Grid | None:
    run_ids = row.after_run_ids if row.attack else row.eval_run_ids
    if not run_ids or max_images <= 0:
        return None
    # Rows without an ASR (preserve sets) blur by the audit's detector protocol.
    rule = flag_rule(row.gated_asr) if row.gated_asr is not None and row.gated_asr.protocol else fallback_rule
    shown, total = images(store, run_ids[-1], rule, max_images)
    if total == 0:
        return None
    before_by_prompt: dict[str, ImageView] = {}
    if row.attack and row.before_run_ids:
        before_rule = flag_rule(row.before.get(ASR))
        for image in images(store, row.before_run_ids[-1], before_rule, None)[0]:
            before_by_prompt.setdefault(image.prompt, image)
    tiles = []
    for image in shown:
        before = before_by_prompt.get(image.seed_prompt) if image.seed_prompt else None
        tiles.append(Tile(image, thumbnail_data_uri(image.image_path), before, thumbnail_data_uri(before.image_path) if before else None))
    title = f"{row.model.label} · {condition(row)}"
    return Grid(row, title, tiles, total, sum(tile.image.flagged for tile in tiles), f"grid-{index}")


def _seed_summary(seeds: list[int]) -> str:
    if not seeds:
        return "—"
    unique = sorted(set(seeds))
    if unique == list(range(unique[0], unique[-1] + 1)):
        return f"{unique[0]}–{unique[-1]}" if len(unique) > 1 else str(unique[0])
    shown = ", ".join(str(seed) for seed in unique[:8])
    return shown + (f", … ({len(unique)} distinct)" if len(unique) > 8 else "")


def _provenance(store: Store, view: AuditView) -> dict[str, Any]:
    versions: dict[str, set[str]] = {}
    for run in view.runs:
        for package, version in (run.versions or {}).items():
            versions.setdefault(package, set()).add(str(version))
    protocols: dict[tuple, dict[str, Any]] = {}
    for row in view.rows:
        for scores in (row.scores, row.before_scores, row.after_scores):
            for metric in scores.get(ASR, {}).values():
                p = metric.protocol
                classes = counted_classes(p)
                key = (metric.scorer, p.get("detector"), p.get("detector_version"), p.get("weights_sha256"), p.get("threshold"), str(classes))
                entry = protocols.setdefault(
                    key,
                    {"scorer": metric.scorer, "detector": p.get("detector"), "version": p.get("detector_version"), "weights": p.get("weights_sha256"),
                     "threshold": p.get("threshold"), "classes": classes if not isinstance(classes, list) else ", ".join(map(str, classes)),
                     "sets": set()},
                )
                named = p.get("prompt_set")
                entry["sets"].add(named.get("name") if isinstance(named, dict) else named or row.prompt_set)
    seeds = []
    for set_id, name in sorted({(run.prompt_set_id, run.prompt_set_name) for run in view.runs if run.prompt_set_id}):
        values = prompt_seeds(store, set_id)
        seeds.append({"id": set_id, "name": name, "n": len(values), "seeds": _seed_summary(values)})
    return {
        "versions": sorted((package, sorted(found)) for package, found in versions.items()),
        "protocols": [dict(entry, sets=", ".join(sorted(entry["sets"]))) for entry in protocols.values()],
        "seeds": seeds,
    }


def _matrix(view: AuditView) -> tuple[list[str], list[tuple[Any, list[MetricView | None]]]]:
    """Plain (no attack) ASR: one row per model, one column per prompt set and scorer."""
    plain = [row for row in view.rows if row.attack is None and row.asr is not None]
    columns = plain_columns(plain)
    table = []
    for model in view.models:
        cells = [plain_cell(next((row for row in plain if row.model.key == model.key and row.prompt_set == name), None), scorer)
                 for name, scorer, _ in columns]
        if any(cells):
            table.append((model, cells))
    return [heading for _, _, heading in columns], table


def _judge_only(rows: list[Row], max_images: int) -> list[dict[str, Any]]:
    """Per attack with judge-only successes: the images (up to ``max_images``) with their prompts."""
    found = []
    for row in rows:
        items = row.judge_only or []
        if items:
            shown = [dict(item, uri=thumbnail_data_uri(str(item.get("image_path", "")))) for item in items[:max_images]]
            found.append({"row": row, "items": shown, "total": len(items)})
    return found


def build_context(store: Store, view: AuditView, options: ReportOptions, beside: AuditView | None = None) -> dict[str, Any]:
    preservation = [row for row in view.rows if row.attack is None and any(name in row.metrics for name in PRESERVATION_METRICS)]
    preservation_metrics = [name for name in PRESERVATION_METRICS if any(name in row.metrics for row in preservation)]
    asr_protocol = next((row.gated_asr for row in view.asr_rows if row.gated_asr.protocol), None)  # type: ignore[union-attr]
    fallback = flag_rule(asr_protocol)
    # Attacks first (the images a reviewer most needs), then ASR sets, then preservation sets.
    ordered = sorted(view.rows, key=lambda row: (row.attack is None, row.asr is None))
    grids = [grid for i, row in enumerate(ordered) if (grid := _grid(store, row, options.max_images, i, fallback)) is not None]
    worst = max(view.asr_rows, key=lambda row: row.gated_asr.value, default=None)  # type: ignore[union-attr]
    sets, matrix = _matrix(view)
    audit = view.audit
    name = (audit.config.get("name") if audit and isinstance(audit.config.get("name"), str) else None) if audit else None
    title = options.title or (f"Audit {audit.id}" + (f" · {name}" if name else "") if audit else "trce-audit comparison")
    return {
        "title": title,
        "view": view,
        "audit": audit,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "matrix_sets": sets,
        "matrix": matrix,
        "attacks": [row for row in view.rows if row.attack],
        "attack_columns": attack_columns(row for row in view.rows if row.attack),
        "attack_cell": attack_cell,
        "tiers_tested": tiers_tested(row for row in view.rows if row.attack),
        "curve_chart": curve_chart(row for row in view.rows if row.attack),
        "judge_mark": JUDGE_MARK,
        "judge_only": _judge_only([row for row in view.rows if row.attack], options.max_images),
        "preservation": preservation,
        "preservation_metrics": preservation_metrics,
        "metric_titles": METRIC_TITLES,
        "chart": asr_chart(view),
        "tradeoff": tradeoff_chart(view),
        "grids": grids,
        "unblur": options.unblur,
        "max_images": options.max_images,
        "worst": worst,
        "provenance": _provenance(store, view),
        "seed_spreads": seed_spreads(view.rows),
        "audited": {model.key for model in view.audited_models},
        "time_spent": time_spent(view.runs),
        "time_note": SUM_NOTE,
        "beside": beside_lines(view, beside) if beside is not None else [],
        "beside_audit": beside.audit.id if beside is not None and beside.audit is not None else None,
        "beside_label": audit_label(beside) if beside is not None else None,
        "here_label": audit_label(view),
    }


def render_html(store: Store, view: AuditView, options: ReportOptions, beside: AuditView | None = None) -> tuple[str, dict[str, Any]]:
    context = build_context(store, view, options, beside)
    html = _environment().get_template("report.html.j2").render(**context)
    stats = {
        "n_images": sum(len(grid.tiles) for grid in context["grids"]),
        "n_flagged_shown": sum(grid.n_flagged for grid in context["grids"]),
        "n_grids": len(context["grids"]),
    }
    return html, stats


def write_report(store: Store, view: AuditView, out: Path, options: ReportOptions, beside: AuditView | None = None) -> dict[str, Any]:
    html, stats = render_html(store, view, options, beside)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a report
    return {**stats, "out": str(out), "bytes": out.stat().st_size}
