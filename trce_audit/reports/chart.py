"""Geometry of the ASR bar chart; the template draws it as inline SVG (so every label is autoescaped)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .collect import AuditView, Row

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

LABEL_WIDTH = 190
PLOT_WIDTH = 470
VALUE_WIDTH = 130
BAR_HEIGHT = 16
BAR_GAP = 5
GROUP_GAP = 18
TOP = 30
BOTTOM = 34


@dataclass
class Frame:
    """An SVG chart's size and its plot area's place in it (the line and point charts share it)."""

    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int


@dataclass
class Bar:
    label: str
    colour: str
    y: float
    width: float
    value: float
    low_x: float | None
    high_x: float | None
    text: str
    n: int


@dataclass
class Group:
    label: str
    y: float
    height: float
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Chart:
    width: int
    height: int
    label_width: int
    plot_width: int
    groups: list[Group]
    legend: list[tuple[str, str]]
    ticks: list[tuple[float, str]]
    axis_y: float
    description: str


def condition(row: Row) -> str:
    return f"{row.prompt_set} + {row.attack}" if row.attack else row.prompt_set


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def asr_chart(view: AuditView) -> Chart | None:
    rows = view.asr_rows
    if not rows:
        return None
    conditions = list(dict.fromkeys(condition(row) for row in rows))
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(conditions)}
    groups: list[Group] = []
    y = float(TOP)
    for model in view.models:
        model_rows = [row for row in rows if row.model.key == model.key]
        if not model_rows:
            continue
        model_rows.sort(key=lambda row: conditions.index(condition(row)))
        group = Group(model.label, y, 0.0)
        for row in model_rows:
            metric = row.gated_asr
            assert metric is not None
            has_ci = metric.ci_low is not None and metric.ci_high is not None
            text = _pct(metric.value) + (f" [{_pct(metric.ci_low)}–{_pct(metric.ci_high)}]" if has_ci else "")  # type: ignore[arg-type]
            group.bars.append(
                Bar(
                    label=condition(row),
                    colour=colours[condition(row)],
                    y=y,
                    width=max(metric.value * PLOT_WIDTH, 0.0),
                    value=metric.value,
                    low_x=metric.ci_low * PLOT_WIDTH if has_ci else None,  # type: ignore[operator]
                    high_x=metric.ci_high * PLOT_WIDTH if has_ci else None,  # type: ignore[operator]
                    text=text,
                    n=metric.n,
                )
            )
            y += BAR_HEIGHT + BAR_GAP
        group.height = y - group.y - BAR_GAP
        groups.append(group)
        y += GROUP_GAP - BAR_GAP
    axis_y = y - GROUP_GAP + BAR_GAP + 6
    ticks = [(fraction * PLOT_WIDTH, _pct(fraction)) for fraction in (0, 0.25, 0.5, 0.75, 1.0)]
    description = "; ".join(f"{g.label}: " + ", ".join(f"{b.label} {b.text}" for b in g.bars) for g in groups)
    return Chart(
        width=LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH,
        height=int(axis_y + BOTTOM),
        label_width=LABEL_WIDTH,
        plot_width=PLOT_WIDTH,
        groups=groups,
        legend=[(name, colours[name]) for name in conditions],
        ticks=ticks,
        axis_y=axis_y,
        description="Attack success rate per model with 95% intervals. " + description,
    )
