"""The view every erasure paper draws: erasure (ASR) against preservation, one point per model with both
intervals, the base model marked; inline-SVG geometry for the HTML report and a table for the Markdown.

The ASR is the chosen erase set's (the audit's first evaluation set): the worst after-attack ASR of the
attacks seeded from it when the model was attacked there, else its ASR with no attack. Preservation is
one metric for every point, the first the models share of preserve accuracy (pocket world), CLIP
score, FID (real models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .chart import PALETTE, Frame
from .text import markdown_cell, markdown_text
from .views import AuditView, MetricView, Row

WIDTH, HEIGHT, LEFT, TOP, RIGHT, BOTTOM = 580, 300, 72, 16, 150, 44
PRESERVATION_ORDER = ("preserve_acc", "clip_score", "fid")
TITLES = {"preserve_acc": "preserve accuracy", "clip_score": "CLIP score", "fid": "FID (lower is better)"}


@dataclass
class Point:
    label: str
    base: bool
    asr: MetricView
    attacked: bool  # the ASR is an attack's after-attack number
    preservation: MetricView
    colour: str
    x: float = 0.0
    y: float = 0.0
    x_low: float | None = None
    x_high: float | None = None
    y_low: float | None = None
    y_high: float | None = None


@dataclass
class TradeoffChart(Frame):
    erase_set: str
    metric: str
    metric_title: str
    points: list[Point]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    description: str


def erase_set(view: AuditView) -> str | None:
    """The audit's first evaluation set, else the first set with an ASR."""
    config = (view.audit.config or {}) if view.audit else {}
    sets = (config.get("prompts") or {}).get("eval") or []
    present = [row.prompt_set for row in view.rows if row.asr is not None and row.attack is None]
    return next((s for s in sets if s in present), present[0] if present else None)


def _erasure(rows: list[Row], chosen: str) -> tuple[MetricView | None, bool]:
    attacked = [row.asr_after for row in rows if row.attack and row.prompt_set == chosen and row.asr_after is not None]
    if attacked:
        return max(attacked, key=lambda m: m.value), True
    plain = next((row.asr for row in rows if not row.attack and row.prompt_set == chosen and row.asr is not None), None)
    return plain, False


def points(view: AuditView) -> tuple[str | None, str | None, list[Point]]:
    chosen = erase_set(view)
    if chosen is None:
        return None, None, []
    found: dict[str, tuple[Any, MetricView, bool, dict[str, MetricView]]] = {}
    for model in view.models:
        rows = [row for row in view.rows if row.model.key == model.key]
        asr, attacked = _erasure(rows, chosen)
        kept = {name: row.metrics[name] for row in rows if not row.attack for name in PRESERVATION_ORDER if name in row.metrics}
        if asr is not None and kept:
            found[model.key] = (model, asr, attacked, kept)
    metric = next((m for m in PRESERVATION_ORDER if found and all(m in kept for *_, kept in found.values())), None)
    if metric is None:
        return chosen, None, []
    return chosen, metric, [Point(model.key, not model.erased, asr, attacked, kept[metric], PALETTE[i % len(PALETTE)])
                            for i, (model, asr, attacked, kept) in enumerate(found.values())]


def tradeoff_chart(view: AuditView) -> TradeoffChart | None:
    chosen, metric, found = points(view)
    if not found or metric is None or chosen is None:
        return None
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    rate = metric == "preserve_acc"
    values = [p.preservation.value for p in found] + [v for p in found for v in (p.preservation.ci_low, p.preservation.ci_high) if v is not None]
    low, high = (0.0, 1.0) if rate else (min(values), max(values))
    span = (high - low) or 1.0
    x = lambda v: v * plot_w  # noqa: E731 - ASR in [0, 1] across the plot
    y = lambda v: (1.0 - (v - low) / span) * plot_h  # noqa: E731 - more preservation higher up
    for p in found:
        p.x, p.y = x(p.asr.value), y(p.preservation.value)
        if p.asr.ci_low is not None and p.asr.ci_high is not None:
            p.x_low, p.x_high = x(p.asr.ci_low), x(p.asr.ci_high)
        if p.preservation.ci_low is not None and p.preservation.ci_high is not None:
            p.y_low, p.y_high = y(p.preservation.ci_low), y(p.preservation.ci_high)
    tick = (lambda v: f"{v * 100:.0f}%") if rate else (lambda v: f"{v:.3g}")
    y_ticks = [(y(low + span * f), tick(low + span * f)) for f in (0, 0.25, 0.5, 0.75, 1.0)]
    description = "; ".join(f"{p.label}{' (base)' if p.base else ''}: ASR {_format('asr', p.asr.value)}"
                            f"{' after attack' if p.attacked else ''}, {TITLES[metric]} {_format(metric, p.preservation.value)}"
                            for p in found)
    return TradeoffChart(WIDTH, HEIGHT, LEFT, TOP, plot_w, plot_h, chosen, metric, TITLES[metric], found,
                         [(x(f), f"{f * 100:.0f}%") for f in (0, 0.25, 0.5, 0.75, 1.0)], y_ticks,
                         f"Erasure against preservation on {chosen}. " + description)


def _format(metric: str, value: float) -> str:
    return f"{value * 100:.1f}%" if metric in ("asr", "preserve_acc") else f"{value:.3g}"


def _interval(metric: str, m: MetricView) -> str:
    return "" if m.ci_low is None or m.ci_high is None else f" [{_format(metric, m.ci_low)}, {_format(metric, m.ci_high)}]"


def markdown_lines(view: AuditView) -> list[str]:
    chosen, metric, found = points(view)
    if not found or metric is None:
        return []
    lines = ["", "## Erasure against preservation", "",
             f"ASR on {markdown_text(chosen)} (the worst after-attack ASR where the model was attacked from that set) against "
             f"{TITLES[metric]}, with 95% intervals.", "",
             f"| model | ASR on {markdown_cell(chosen)} | {TITLES[metric]} |", "|---|---|---|"]
    for p in found:
        asr = _format("asr", p.asr.value) + _interval("asr", p.asr) + (" (after attack)" if p.attacked else "")
        kept = _format(metric, p.preservation.value) + _interval(metric, p.preservation)
        lines.append(f"| {markdown_cell(p.label)}{' (base)' if p.base else ''} | {asr} | {kept} |")
    return lines
