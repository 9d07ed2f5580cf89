"""One audit's numbers beside another's: the same erasers and attacks on two models (the pocket world's
SD and FLUX architectures, say), measure by measure.

Models pair up by role: each audit's un-erased model is "base", an erased model goes by its key ("uce",
"trce[seed 0]"), so an eraser under one seed meets itself under that seed. Per pair: the plain ASR of
every (prompt set, scorer), preservation on each preserve set, and each attack's ASR on its adversarial
prompts under its first scorer; attacks pair by name, so a transfer meets the attack it replays.
"""

from __future__ import annotations

from dataclasses import dataclass

from .columns import plain_columns
from .text import markdown_cell, markdown_text
from .views import ASR, AuditView, MetricView, Row


@dataclass(frozen=True)
class BesideLine:
    model: str  # "base" or the erased model's key
    measure: str
    here: MetricView | None
    there: MetricView | None

    @property
    def difference(self) -> float | None:
        """here − there, in the metric's own units (a rate: a fraction)."""
        return None if self.here is None or self.there is None else self.here.value - self.there.value

    @property
    def intervals_overlap(self) -> bool | None:
        """None unless both sides carry a Wilson interval."""
        sides = (self.here, self.there)
        if any(side is None or side.ci_low is None or side.ci_high is None for side in sides):
            return None
        return self.here.ci_low <= self.there.ci_high and self.there.ci_low <= self.here.ci_high  # type: ignore[union-attr,operator]


def _roles(view: AuditView) -> dict[str, str]:
    """Model key -> the name it pairs by: "base" for the audit's one un-erased model (several un-erased
    models, as a hand-picked list of runs may hold, keep their own keys), else the key."""
    bases = [model.key for model in view.models if not model.erased]
    return {model.key: "base" if not model.erased and len(bases) == 1 else model.key for model in view.models}


def _measures(view: AuditView) -> dict[tuple[str, str], MetricView | None]:
    """(role, measure) -> metric, in the view's row order."""
    roles = _roles(view)

    def role(row: Row) -> str:
        return roles.get(row.model.key, row.model.key)

    plain = [row for row in view.rows if row.attack is None]
    found: dict[tuple[str, str], MetricView | None] = {}
    columns = plain_columns(plain)
    for row in plain:
        for name, scorer, heading in columns:
            if name == row.prompt_set and scorer in row.scores.get(ASR, {}):
                found[(role(row), f"ASR {heading}")] = row.scores[ASR][scorer]
    for row in plain:
        if "preserve_acc" in row.metrics:
            kept = row.metrics["preserve_acc"]
            found[(role(row), f"preserve {row.prompt_set}" + (f" · scorer: {kept.scorer}" if kept.scorer else ""))] = kept
    for row in view.rows:
        if row.attack is not None:
            scorer = row.primary_scorer
            label = f"ASR after {row.attack_name} ({row.prompt_set})" + (f" · scorer: {scorer}" if scorer else "")
            # a second run of one attack on one model and set (another label or budget, a native run beside
            # a transfer) is numbered in run order, so each audit's k-th run pairs and none hides another
            repeat, numbered = 1, label
            while (role(row), numbered) in found:
                repeat += 1
                numbered = f"{label} (run {repeat})"
            found[(role(row), numbered)] = row.asr_after
    return found


def beside_lines(here: AuditView, there: AuditView) -> list[BesideLine]:
    """Every measure either audit has, grouped by model (this audit's order first), plain ASR before
    preservation before attacks; a side that lacks the measure is None."""
    mine, theirs = _measures(here), _measures(there)
    models = list(dict.fromkeys([model for model, _ in mine] + [model for model, _ in theirs]))
    lines = []
    for model in models:
        keys = [key for key in dict.fromkeys([*mine, *theirs]) if key[0] == model]
        keys.sort(key=lambda key: (key[1].startswith("ASR after"), key[1].startswith("preserve")))
        lines += [BesideLine(model, measure, mine.get((model, measure)), theirs.get((model, measure))) for model, measure in keys]
    return lines


def audit_label(view: AuditView) -> str:
    audit = view.audit
    if audit is None:
        return "these runs"
    return f"{audit.model_ref or audit.config.get('name', 'audit')} (audit {audit.id})"


def percent_cell(metric: MetricView | None) -> str:
    """A rate with its Wilson interval, as every Markdown table of the report writes it."""
    if metric is None:
        return "–"
    interval = "" if metric.ci_low is None or metric.ci_high is None else f" [{metric.ci_low * 100:.0f}, {metric.ci_high * 100:.0f}]"
    return f"{metric.value * 100:.1f}%{interval}"


def markdown_lines(here: AuditView, there: AuditView) -> list[str]:
    lines = beside_lines(here, there)
    if not lines:
        return []
    mine, theirs = audit_label(here), audit_label(there)
    spec = there.audit.config.get("name") if there.audit is not None else None
    out = ["", f"## Beside {markdown_text(theirs)}", "",
           f"Each model of this audit beside its counterpart in audit {there.audit.id if there.audit else '?'}"
           + (f" (spec `{markdown_text(spec)}`)" if spec else "") + ": the un-erased models pair as `base`, an erased model",
           "with the one of the same name (eraser, and training seed where it has one); attacks pair by name (a transfer meets the attack it replays), each",
           "the ASR on its adversarial prompts under its first scorer. Difference: this audit's number minus the",
           "other's, in points; intervals overlap: whether the two Wilson 95% intervals meet (no: the two differ by",
           "more than sampling noise at these sizes). –: that audit did not measure it.", "",
           f"| model | measure | {markdown_cell(mine)} | {markdown_cell(theirs)} | difference | intervals overlap |", "|---|---|---|---|---|---|"]
    for line in lines:
        difference = "–" if line.difference is None else f"{line.difference * 100:+.1f}"
        overlap = {True: "yes", False: "**no**", None: "–"}[line.intervals_overlap]
        out.append(f"| {markdown_cell(line.model)} | {markdown_cell(line.measure)} | {percent_cell(line.here)} | {percent_cell(line.there)} | {difference} | {overlap} |")
    return out
