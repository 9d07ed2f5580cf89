"""Where the time went: per run kind, how many of the report's runs were timed, the sum of their wall
times and the thread counts they ran with; and the audit's span from its first start to its last finish.

A run's wall time is the seconds its finishing attempt recorded (store/runs.py ``finish``: from the start
of the attempt that finished it, so a run resumed after a kill does not count the pause; an erase run
stored before that, the seconds its eraser reported in its summary: the model's load and the edit, in
process or on the worker, without the save or a queue's wait). Runs stored without them
(still running, or by a trce-audit before runs recorded their seconds) are counted as not timed, never
estimated from ``created_at``: an older trce-audit moved a complete run's finish time each time a
resumed audit passed it by.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from .text import markdown_cell as md_cell
from .views import AuditView, RunInfo

KIND_ORDER = ("erase", "generate", "eval", "attack", "audit")  # the pipeline's order; other kinds follow by name
NOT_RECORDED = "not recorded"
FINISHED = ("complete", "failed")  # a failed run's time was spent too
SUM_NOTE = ("Per kind, the runs this report covers: how many were timed (finished, complete or failed, with their seconds recorded), the sum of their wall times "
            "(each run's finishing attempt, from its start to its finish: compute wall time, so runs that ran side by side "
            "on several workers add up; an attack's time includes its own evaluations and the audit run's spans everything "
            "it ran), and torch's thread count where each ran. Not timed: still running, interrupted, or stored by a "
            "trce-audit that did not record a run's seconds.")
SPAN_NOTE = ("from the first run's start to the last run's finish. It includes any pauses between an interrupted audit "
             "and its resumption, so it is not the compute time; the sums per kind are.")


@dataclass
class KindTime:
    kind: str
    runs: int  # runs of this kind the report covers
    timed: int  # complete or failed, with the seconds of the attempt that finished it
    seconds: float  # the sum of the timed runs' wall times
    threads: list[tuple[str, int]]  # (thread count or NOT_RECORDED, runs), most runs first

    @property
    def not_timed(self) -> int:
        return self.runs - self.timed

    @property
    def thread_tally(self) -> str:
        return ", ".join(f"{label} ({n} run{'' if n == 1 else 's'})" for label, n in self.threads)


@dataclass
class TimeSpent:
    kinds: list[KindTime]
    start: datetime | None  # the first run's start
    end: datetime | None  # the last finished run's finish

    @property
    def span_seconds(self) -> float | None:
        if self.start is None or self.end is None or self.end < self.start:
            return None
        return (self.end - self.start).total_seconds()

    def span_line(self) -> str:
        span = self.span_seconds
        if span is None or self.start is None or self.end is None:
            return "Span of the audit: not known (no run has both a start and a finish time)."
        return f"Span of the audit: {duration(span)}, {self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M} UTC, {SPAN_NOTE}"


def _threads(runtime: dict[str, Any]) -> str:
    value = runtime.get("threads")
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else NOT_RECORDED


def recorded_seconds(kind: str, runtime: dict[str, Any], summary: dict[str, Any]) -> float | None:
    """The seconds a run recorded for the attempt that finished it (a bool or a negative value is none).
    An erase has reported its own seconds in its summary since before runs recorded them in ``runtime``
    (orchestration/erase_runs.py, erase_jobs.py: load and edit, without the save or a queue's wait, so a
    little less than ``runtime``'s span), so an older erase run is timed too."""
    seconds = runtime.get("seconds")
    if seconds is None and kind == "erase":
        seconds = summary.get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return None
    return float(seconds)


def _wall_seconds(run: RunInfo) -> float | None:
    return recorded_seconds(run.kind, run.runtime, run.summary or {}) if run.status in FINISHED else None


def time_spent(runs: Iterable[RunInfo]) -> TimeSpent:
    runs = list(runs)
    kinds = sorted({run.kind for run in runs}, key=lambda kind: (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind))
    found = []
    for kind in kinds:
        mine = [run for run in runs if run.kind == kind]
        walls = [wall for wall in map(_wall_seconds, mine) if wall is not None]
        tally = Counter(_threads(run.runtime) for run in mine)
        # most runs first; "not recorded" after every recorded count
        order = sorted(tally.items(), key=lambda item: (item[0] == NOT_RECORDED, -item[1], item[0]))
        found.append(KindTime(kind, len(mine), len(walls), sum(walls), order))
    starts = [run.created_at for run in runs if run.created_at is not None]
    ends = [run.finished_at for run in runs if run.finished_at is not None and _wall_seconds(run) is not None]
    return TimeSpent(found, min(starts, default=None), max(ends, default=None))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 60 else f"{minutes / 60:.2f} h ({minutes:.0f} min)"


def markdown_lines(view: AuditView) -> list[str]:
    spent = time_spent(view.runs)
    if not spent.kinds:
        return []
    lines = ["", "## Where the time went", "", SUM_NOTE, "",
             "| kind | runs | timed | wall time (sum) | not timed | threads |", "|---|---|---|---|---|---|"]
    for kind in spent.kinds:
        wall = duration(kind.seconds) if kind.timed else "–"
        lines.append(f"| {md_cell(kind.kind)} | {kind.runs} | {kind.timed} | {wall} | {kind.not_timed} | {md_cell(kind.thread_tally)} |")
    return lines + ["", spent.span_line()]
