"""Render the HTML comparison report of an audit or of chosen runs (reads the store only)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..parsing import row_id
from ..reports import sections
from ..reports.collect import collect
from ..reports.linking import audit_id_of
from ..reports.markdown import render_markdown
from ..reports.render import ReportOptions, write_report
from ..store import Store
from ..workspace import user_path

__all__ = ["parse_run_ids", "render_report"]


def parse_run_ids(text: str) -> list[int]:
    """`--runs 3,4,7` as ids, with a one-line error for anything else."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    ids = [row_id(part) for part in parts]
    if not ids or None in ids:  # "²" and thousands of digits are no run ids
        raise ConfigError(f"--runs expects run ids separated by commas, got {text[:80]!r}")
    return ids  # type: ignore[return-value]


def render_report(
    store: Store,
    out: str | Path,
    *,
    audit_id: int | str | None = None,
    run_ids: Sequence[int] | None = None,
    unblur: bool = False,
    max_images: int = 12,
    beside: str | None = None,
    section: str | None = None,
) -> dict[str, Any]:
    """Write one self-contained HTML file comparing the models of an audit (default: the latest).

    Returns the data shown (the same rows `gate --json` writes, usable as a gate baseline) and file stats.
    ``audit_id`` and ``beside`` name an audit by run id or spec name; ``beside`` adds a table of each model's numbers beside its
    counterpart's in that audit; ``section`` writes a Markdown report into that named section of ``out``,
    keeping the rest of the file (reports.sections).
    """
    if audit_id is not None and run_ids is not None:
        raise ConfigError("give --audit or --runs, not both")
    if max_images < 0:
        raise ConfigError(f"--max-images must be 0 or more, got {max_images}")
    out_path = user_path(out)
    if out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder; give a file name such as report.html")
    markdown = out_path.suffix.lower() == ".md"
    if section is not None and not markdown:
        raise ConfigError("--section writes into a Markdown document; give --out a .md file")
    if section is not None:
        sections.check_name(section)
    chosen = audit_id_of(store, audit_id) if isinstance(audit_id, str) else audit_id
    view = collect(store, audit_id=chosen, run_ids=run_ids)
    if not view.rows:
        raise ConfigError("nothing to report: the selected runs hold no completed evaluation")
    other = collect(store, audit_id=audit_id_of(store, beside)) if beside is not None else None
    if other is not None and not other.rows:
        raise ConfigError(f"--beside {beside}: that audit holds no completed evaluation")
    if markdown:
        title = f"Audit results: {view.audit.config.get('name', 'audit')}" if view.audit else "Results"
        words = ["--out", str(out), *(["--audit", str(audit_id)] if audit_id else []),
                 *(["--section", section] if section else []), *(["--beside", beside] if beside else [])]
        command = "trce-audit report " + " ".join(shlex.quote(word) for word in words)
        text = render_markdown(view, title=title, command=command, beside=other)
        written = sections.write(out_path, text, section)
        return {**view.as_dict(), "report": {"out": str(out_path), "bytes": len(written.encode()), "format": "markdown"}}
    stats = write_report(store, view, out_path, ReportOptions(unblur=unblur, max_images=max_images), beside=other)
    return {**view.as_dict(), "report": stats}
