"""Render the HTML comparison report of an audit or of chosen runs (reads the store only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..parsing import row_id
from ..reports.collect import collect
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
    audit_id: int | None = None,
    run_ids: Sequence[int] | None = None,
    unblur: bool = False,
    max_images: int = 12,
) -> dict[str, Any]:
    """Write one self-contained HTML file comparing the models of an audit (default: the latest).

    Returns the data shown (the same rows `gate --json` writes, usable as a gate baseline) and file stats.
    """
    if audit_id is not None and run_ids is not None:
        raise ConfigError("give --audit or --runs, not both")
    if max_images < 0:
        raise ConfigError(f"--max-images must be 0 or more, got {max_images}")
    out_path = user_path(out)
    if out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder; give a file name such as report.html")
    view = collect(store, audit_id=audit_id, run_ids=run_ids)
    if not view.rows:
        raise ConfigError("nothing to report: the selected runs hold no completed evaluation")
    if out_path.suffix.lower() == ".md":
        title = f"Audit results: {view.audit.config.get('name', 'audit')}" if view.audit else "Results"
        command = f"trce-audit report --out {out}" + (f" --audit {audit_id}" if audit_id else "")
        text = render_markdown(view, title=title, command=command)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text, encoding="utf-8")
        return {**view.as_dict(), "report": {"out": str(out_path), "bytes": len(text.encode()), "format": "markdown"}}
    stats = write_report(store, view, out_path, ReportOptions(unblur=unblur, max_images=max_images))
    return {**view.as_dict(), "report": stats}
