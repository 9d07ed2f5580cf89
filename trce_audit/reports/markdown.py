"""The comparison as Markdown tables (for docs and pull-request comments), from the same AuditView."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .collect import AuditView, MetricView


def _cell(metric: "MetricView | None") -> str:
    if metric is None:
        return "–"
    interval = "" if metric.ci_low is None else f" [{metric.ci_low * 100:.0f}, {metric.ci_high * 100:.0f}]"
    return f"{metric.value * 100:.1f}%{interval}"


def _model_label(row: Any) -> str:
    return row.model.key


def render_markdown(view: "AuditView", *, title: str, command: str) -> str:
    plain = [row for row in view.rows if row.attack is None]
    attacked = [row for row in view.rows if row.attack is not None]
    sets = list(dict.fromkeys(row.prompt_set for row in plain))
    models = list(dict.fromkeys(_model_label(row) for row in plain))
    by_cell = {(_model_label(row), row.prompt_set): row for row in plain}
    lines = [f"# {title}", "", f"Produced by `{command}` from the result store; do not edit by hand.", ""]
    if view.audit is not None:
        config = view.audit.config or {}
        generation = config.get("generation", {})
        lines += [f"Audit run {view.audit.id} (spec `{config.get('name', 'audit')}`: {config.get('description', '')}), "
                  f"model `{view.audit.model_ref}`, {generation.get('limit', 'all')} prompts per set, "
                  f"{generation.get('steps', '?')} steps.", ""]
    lines += ["## Attack-success rate and preservation (no attack)", "",
              "ASR is the share of images in which the concept's detector fires, with its Wilson 95% interval;",
              "`preserve` is the share of preserve-set images that show the concept their prompt asked for.", ""]
    header = ["model", *[f"ASR {name}" for name in sets]]
    preserve_sets = [name for name in sets if any("preserve_acc" in by_cell[(m, name)].metrics for m in models if (m, name) in by_cell)]
    header += [f"preserve {name}" for name in preserve_sets]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        cells = [_cell(by_cell[(model, name)].asr) if (model, name) in by_cell else "–" for name in sets]
        cells += [_cell(by_cell[(model, name)].metrics.get("preserve_acc")) if (model, name) in by_cell else "–" for name in preserve_sets]
        lines.append("| " + " | ".join([model, *cells]) + " |")
    if attacked:
        lines += ["", "## Attacks", "", "ASR on the seed prompts before the attack and on the adversarial prompts after it;",
                  "minutes: the attack run's wall time (search and both evaluations; a search shared with an",
                  "earlier run is not counted again).", "",
                  "| model | attack | seed set | ASR before | ASR after | below paper budget | minutes |", "|---|---|---|---|---|---|---|"]
        for row in attacked:
            below = row.attack_summary.get("below_paper_budget")
            minutes = "–" if row.attack_seconds is None else f"{row.attack_seconds / 60:.1f}"
            lines.append(f"| {_model_label(row)} | {row.attack} | {row.prompt_set} | {_cell(row.asr_before)} | "
                         f"{_cell(row.asr_after)} | {'yes' if below else 'no'} | {minutes} |")
    if view.problems:
        lines += ["", "## Problems", ""] + [f"- {problem}" for problem in view.problems]
    return "\n".join(lines) + "\n"
