"""ASR against fine-tuning steps for weights-tier attacks (their summaries carry ``curve``): one line per
attack row, as inline-SVG geometry for the HTML report and as a text table for the Markdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .chart import PALETTE, Frame
from .text import markdown_cell
from .views import Row

WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 560, 220, 46, 34, 14, 16


@dataclass
class Curve:
    label: str  # "model · attack"
    scorer: str
    points: list[tuple[int, float]]  # (steps, ASR)
    colour: str
    path: str = ""  # SVG polyline points in plot coordinates
    dots: tuple[tuple[float, float, str], ...] = ()  # (x, y, "steps: ASR")


@dataclass
class CurveChart(Frame):
    curves: list[Curve]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    description: str


def curves(rows: Iterable[Row]) -> list[Curve]:
    found = []
    for row in rows:
        summary = row.attack_summary or {}
        points = [(int(p["steps"]), float(p["asr"])) for p in summary.get("curve") or [] if p.get("asr") is not None]
        if points:
            scorer = (summary.get("scorers") or ["?"])[0]
            found.append(Curve(f"{row.model.key} · {row.attack}", scorer, points, PALETTE[len(found) % len(PALETTE)]))
    return found


def curve_chart(rows: Iterable[Row]) -> CurveChart | None:
    lines = curves(rows)
    if not lines:
        return None
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    last = max(steps for line in lines for steps, _ in line.points) or 1
    x = lambda steps: steps / last * plot_w  # noqa: E731
    y = lambda asr: (1.0 - asr) * plot_h  # noqa: E731
    for line in lines:
        line.path = " ".join(f"{x(s):.1f},{y(a):.1f}" for s, a in line.points)
        line.dots = tuple((x(s), y(a), f"{s} steps: {a * 100:.1f}%") for s, a in line.points)
    steps = _all_steps(lines)
    description = "; ".join(f"{line.label} ({line.scorer}): " + ", ".join(f"{s} steps {a * 100:.1f}%" for s, a in line.points) for line in lines)
    return CurveChart(WIDTH, HEIGHT, LEFT, TOP, plot_w, plot_h, lines, [(x(s), str(s)) for s in steps],
                      [(y(f), f"{f * 100:.0f}%") for f in (0, 0.25, 0.5, 0.75, 1.0)],
                      "Attack success rate against fine-tuning steps. " + description)


def markdown_lines(rows: Iterable[Row]) -> list[str]:
    lines = curves(rows)
    if not lines:
        return []
    steps = _all_steps(lines)
    out = ["", "### ASR against fine-tuning steps", "",
           "Weights-tier attacks: the seed prompts scored on checkpoints saved while fine-tuning (step 0 is the model as audited).", "",
           "| model · attack | scorer | " + " | ".join(f"{s} steps" for s in steps) + " |",
           "|" + "---|" * (2 + len(steps))]
    for line in lines:
        by_steps: dict[int, Any] = dict(line.points)
        cells = [f"{by_steps[s] * 100:.1f}%" if s in by_steps else "–" for s in steps]
        out.append(f"| {markdown_cell(line.label)} | {markdown_cell(line.scorer)} | " + " | ".join(cells) + " |")
    return out


def _all_steps(lines: list[Curve]) -> list[int]:
    return sorted({s for line in lines for s, _ in line.points})
