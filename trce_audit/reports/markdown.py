"""The comparison as Markdown tables (for docs and pull-request comments), from the same AuditView."""

from __future__ import annotations

from typing import Any

from .columns import JUDGE_MARK, attack_cell, attack_columns, plain_cell, plain_columns, tiers_tested
from . import beside as beside_table, timing, tradeoff
from .curves import markdown_lines
from .seeds import seed_spreads
from .text import markdown_cell as md_cell, markdown_text as md_text
from .views import AuditView, MetricView


_cell = beside_table.percent_cell


def _model_label(row: Any) -> str:
    return row.model.key


def _code(value: object) -> str:
    """A value in a code span (shown as written, HTML included): one line, no backtick to end it early."""
    return "`" + md_text(value).replace("`", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") + "`"


def render_markdown(view: AuditView, *, title: str, command: str, beside: AuditView | None = None) -> str:
    plain = [row for row in view.rows if row.attack is None]
    attacked = [row for row in view.rows if row.attack is not None]
    sets = list(dict.fromkeys(row.prompt_set for row in plain))
    models = list(dict.fromkeys(_model_label(row) for row in plain))
    by_cell = {(_model_label(row), row.prompt_set): row for row in plain}
    asr_columns = plain_columns(plain)
    lines = [f"# {md_text(title)}", "", f"Produced by {_code(command)} from the result store; do not edit by hand.", ""]
    if view.audit is not None:
        config = view.audit.config or {}
        generation = config.get("generation", {})
        family = (getattr(view.audit, "summary", None) or {}).get("family")
        kind = f" ({md_text(family)} family{', preset ' + md_text(generation['preset']) if generation.get('preset') else ''})" if family else ""
        lines += [f"Audit run {view.audit.id} (spec {_code(config.get('name', 'audit'))}: {md_text(config.get('description', ''))}), "
                  f"model {_code(view.audit.model_ref)}{kind}, {md_text(generation.get('limit', 'all'))} prompts per set, "
                  f"{md_text(generation.get('steps', '?'))} steps.", ""]
    lines += ["## Attack-success rate and preservation (no attack)", "",
              "ASR is the share of images in which the named scorer detects the concept, with its Wilson 95% interval;",
              "`preserve` is the share of preserve-set images that show the concept their prompt asked for.", ""]
    header = ["model", *[f"ASR {md_cell(heading)}" for _, _, heading in asr_columns]]
    preserve_sets = [name for name in sets if any("preserve_acc" in by_cell[(m, name)].metrics for m in models if (m, name) in by_cell)]
    header += [f"preserve {md_cell(name)}" for name in preserve_sets]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        cells = [_cell(plain_cell(by_cell.get((model, name)), scorer)) for name, scorer, _ in asr_columns]
        cells += [_cell(by_cell[(model, name)].metrics.get("preserve_acc")) if (model, name) in by_cell else "–" for name in preserve_sets]
        lines.append("| " + " | ".join([md_cell(model), *cells]) + " |")
    lines += tradeoff.markdown_lines(view)
    if beside is not None:
        lines += beside_table.markdown_lines(view, beside)
    if attacked:
        columns = attack_columns(attacked)
        lines += ["", "## Attacks", "", "ASR on the seed prompts before the attack → on the adversarial prompts after it, under each",
                  "scorer and under the attack's judge (the detector it consulted while it searched); "
                  f"{JUDGE_MARK}: the scorer was also the judge, so that number is not independent. Judge-only: adversarial",
                  "images the judge flags and the first scorer does not. Minutes: the attack run's wall time (search and",
                  "both evaluations; a search shared with an earlier run is not counted again).", ""]
        header = ["model", "attack", "tier", "seed set", *[md_cell(heading) for _, heading in columns], "judge-only", "below paper budget", "minutes"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in attacked:
            below = row.attack_summary.get("below_paper_budget")
            minutes = "–" if row.attack_seconds is None else f"{row.attack_seconds / 60:.1f}"
            cells = []
            for scorer, _ in columns:
                cell = attack_cell(row, scorer)
                text = "–" if cell["after"] is None else f"{_cell(cell['before'])} → {_cell(cell['after'])}"
                cells.append(text + (f" {JUDGE_MARK}" if cell["judge_too"] else ""))
            judge_only = row.judge_only
            lines.append("| " + " | ".join([md_cell(_model_label(row)), md_cell(row.attack), md_cell(row.tier or "?"), md_cell(row.prompt_set), *cells,
                                             "–" if judge_only is None else str(len(judge_only)),
                                             "yes" if below else "no", minutes]) + " |")
        lines += ["", "Threat tiers tested (prompt: the attacker writes prompts; embedding: feeds a learned token",
                  "embedding; weights: fine-tunes the model):", ""]
        for model, tested, untested in tiers_tested(attacked):
            lines.append(f"- {md_text(model)}: {md_text(', '.join(tested)) or 'none'}" + (f" (not tested: {md_text(', '.join(untested))})" if untested else ""))
        lines += markdown_lines(attacked)
        listed = [row for row in attacked if row.judge_only]
        if listed:
            lines += ["", "### Judge-only successes", "", "Adversarial prompts whose image the judge flags and the first scorer does not:", ""]
            for row in listed:
                scorers = row.attack_summary.get("scorers") or ["?"]
                lines.append(f"- {md_text(row.model.key)} · {md_text(row.attack)} (judge {_code(row.judge)}, scorer {_code(scorers[0])}):")
                for found in row.judge_only or []:
                    lines.append(f"  - generation {md_text(found.get('generation_id'))}: {_code(found.get('prompt', ''))}")
    lines += _agreement_lines(view)
    lines += _seed_lines(view)
    lines += _erased_lines(view)
    lines += timing.markdown_lines(view)
    if view.problems:
        lines += ["", "## Problems", ""] + [f"- {md_text(problem)}" for problem in view.problems]
    return "\n".join(lines) + "\n"


def _value(metric: MetricView | float, name: str) -> str:
    value = metric if isinstance(metric, float) else metric.value
    return f"{value * 100:.1f}%" if name in ("asr", "preserve_acc") else f"{value:.4g}"


def _agreement_lines(view: AuditView) -> list[str]:
    if not view.agreements:
        return []
    lines = ["", "## Agreement of the judges", "",
             "Where two detectors scored the same images, each under its own ASR rule: how many images both flag, only one",
             "flags, or neither; the share of equal verdicts, and Cohen's kappa (1: agree beyond chance on every image,",
             "0: no more than their flag rates give by chance; – when one verdict covers every image).", "",
             "| images | judge A | judge B | n | both | A only | B only | neither | equal | kappa |", "|---|---|---|---|---|---|---|---|---|---|"]
    for found in view.agreements:
        table, kappa = found.table, found.table.kappa
        lines.append(f"| {md_cell(found.where)} | {md_cell(found.first)} | {md_cell(found.second)} | {table.n} | {table.both} | {table.first_only} | "
                     f"{table.second_only} | {table.neither} | {table.observed * 100:.1f}% | {'–' if kappa is None else f'{kappa:.2f}'} |")
    return lines


def _seed_lines(view: AuditView) -> list[str]:
    spreads = seed_spreads(view.rows)
    if not spreads:
        return []
    lines = ["", "## Training seeds", "",
             "Erasers trained under several seeds: each seed's number (ASR after the attack on attack rows), their mean",
             "and range, and whether the seeds' 95% intervals overlap (no: the seeds differ by more than sampling noise).", "",
             "| model | prompt set | attack | metric | per seed | mean | range | intervals overlap |", "|---|---|---|---|---|---|---|---|"]
    for spread in spreads:
        per_seed = " · ".join(f"{seed}: {_value(metric, spread.metric)}" for seed, metric in spread.seeds)
        overlap = {True: "yes", False: "**no**", None: "–"}[spread.intervals_overlap]
        lines.append(f"| {md_cell(spread.group)} | {md_cell(spread.prompt_set)} | {md_cell(spread.attack or '–')} | {md_cell(spread.metric)} | {per_seed} | "
                     f"{_value(spread.mean, spread.metric)} | {_value(spread.low, spread.metric)} – {_value(spread.high, spread.metric)} | {overlap} |")
    return lines


def _erased_lines(view: AuditView) -> list[str]:
    erased = [model for model in view.models if model.erased]
    if not erased:
        return []
    lines = ["", "## Erased models", "",
             "Where each erase ran: torch's thread count splits its reductions, so it is part of what reproduces the weights.", "",
             "| model | eraser | seed | erase run | device | threads |", "|---|---|---|---|---|---|"]
    for model in erased:
        seed = model.erase_config.get("seed")
        runtime = model.erase_runtime
        lines.append(f"| {md_cell(model.key)} | {md_cell(model.eraser)} | {'–' if seed is None else md_cell(seed)} | {model.erase_run_id or '–'} | "
                     f"{md_cell(runtime.get('device', '–'))} | {md_cell(runtime.get('threads', '–'))} |")
    return lines
