"""The report's "Where the time went": per run kind the timed runs, their summed wall time and the
thread counts they ran with, and the audit's span, in Markdown and HTML, from runs with known times."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

from trce_audit.store.schema import Run

T0 = datetime(2025, 3, 1, 8, 0)
SPAN = "Span of the audit: 10.00 h (600 min), 2025-03-01 08:00 → 2025-03-01 18:00 UTC"
# kind, runs, timed, summed wall time, not timed, thread tally: what the store below must give
EXPECTED = [
    ("erase", 3, 2, "1.50 h (90 min)", 1, "2 (2 runs), not recorded (1 run)"),
    ("generate", 1, 1, "45.0 min", 0, "4 (1 run)"),
    ("eval", 4, 3, "30.0 min", 1, "1 (1 run), 2 (1 run), not recorded (2 runs)"),
    ("attack", 1, 1, "40.0 min", 0, "2 (1 run)"),
    ("audit", 1, 1, "10.00 h (600 min)", 0, "not recorded (1 run)"),
    ("probe", 1, 1, "2.0 min", 0, "8 (1 run)"),  # a kind the report knows nothing else about
]


def _timed(store, run_id, start_minutes, minutes, seconds=True):
    """Give a run known start and finish times (``minutes`` None: it never finished) and, unless
    ``seconds`` is false (a store written before runs recorded them), its attempt's seconds."""
    with store.session() as session:
        run = session.get(Run, run_id)
        run.created_at = T0 + timedelta(minutes=start_minutes)
        run.finished_at = None if minutes is None else run.created_at + timedelta(minutes=minutes)
        runtime = {k: v for k, v in run.runtime.items() if k != "seconds"}
        run.runtime = {**runtime, "seconds": minutes * 60} if minutes is not None and seconds else runtime


def _run(store, kind, tag, *, parent, start, minutes, threads=None, seconds=True):
    run = store.start_run(kind=kind, component=f"c-{tag}", config={"tag": tag}, parent_run_id=parent, runtime={"device": "cpu"})
    if minutes is not None:
        store.complete_run(run.id, {}, runtime={"threads": threads} if threads is not None else None)
    _timed(store, run.id, start, minutes, seconds)
    return run.id


def build_timed_audit(store) -> int:
    """An audit that ran 08:00–18:00 with a pause (nothing ran 10:00–16:00), and a run of another audit."""
    audit = store.start_run(kind="audit", component="audit", config={"name": "timed"})
    _run(store, "erase", "e1", parent=audit.id, start=0, minutes=30, threads=2)
    _run(store, "erase", "e2", parent=audit.id, start=30, minutes=60, threads=2)
    _run(store, "erase", "e3", parent=audit.id, start=90, minutes=None)  # killed: no finish time, no threads
    _run(store, "eval", "v1", parent=audit.id, start=100, minutes=15, threads=1)
    _run(store, "eval", "v2", parent=audit.id, start=115, minutes=5)  # stored before evals recorded threads
    # stored before runs recorded their seconds: its timestamps are not trusted (an older trce-audit moved a
    # complete run's finish each time a resumed audit passed it by), so it is not timed
    _run(store, "eval", "v3", parent=audit.id, start=120, minutes=300, seconds=False)
    _run(store, "generate", "g1", parent=audit.id, start=480, minutes=45, threads=4)  # after the pause
    attack = _run(store, "attack", "a1", parent=audit.id, start=540, minutes=40, threads=2)
    _run(store, "eval", "a1-eval", parent=attack, start=560, minutes=10, threads=2)
    _run(store, "probe", "p1", parent=audit.id, start=590, minutes=2, threads=8)
    store.complete_run(audit.id, {})
    _timed(store, audit.id, 0, 600)
    other = store.start_run(kind="audit", component="audit", config={"name": "other"})
    _run(store, "erase", "elsewhere", parent=other.id, start=0, minutes=300, threads=16)  # not this report's
    return audit.id


def test_markdown_sums_wall_times_and_tallies_threads_per_kind(store):
    from trce_audit.reports.collect import collect
    from trce_audit.reports.markdown import render_markdown

    audit = build_timed_audit(store)
    text = render_markdown(collect(store, audit_id=audit), title="T", command="trce-audit report")
    section = text.split("## Where the time went", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| kind")]
    assert rows == [f"| {kind} | {runs} | {done} | {wall} | {untimed} | {threads} |" for kind, runs, done, wall, untimed, threads in EXPECTED]
    assert SPAN in section and "includes any pauses" in section and "compute wall time" in section
    assert "16 (" not in section  # the other audit's run is not counted


def test_html_shows_the_same_sums_counts_and_threads(store):
    from trce_audit.reports.collect import collect
    from trce_audit.reports.render import ReportOptions, render_html

    audit = build_timed_audit(store)
    page, _ = render_html(store, collect(store, audit_id=audit), ReportOptions())
    section = page.split('<section id="time"', 1)[1].split("</section>", 1)[0]
    body = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    cells = [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", row)]
             for row in re.findall(r"<tr>.*?</tr>", body, re.S)]
    assert cells == [[kind, str(runs), str(done), wall, str(untimed), threads] for kind, runs, done, wall, untimed, threads in EXPECTED]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", section)).split())
    assert SPAN in text and "includes any pauses" in text and "compute wall time" in text
    assert 'href="#time"' in page


def test_a_store_without_finish_times_says_so_and_guesses_nothing(store):
    from trce_audit.reports.collect import collect
    from trce_audit.reports.markdown import render_markdown

    audit = store.start_run(kind="audit", component="audit", config={"name": "unfinished"})
    _run(store, "erase", "e", parent=audit.id, start=0, minutes=None)
    text = render_markdown(collect(store, audit_id=audit.id), title="T", command="trce-audit report")
    assert "| erase | 1 | 0 | – | 1 | not recorded (1 run) |" in text
    assert "| audit | 1 | 0 | – | 1 | not recorded (1 run) |" in text
    assert "Span of the audit: not known" in text


def test_an_attack_stored_without_its_seconds_is_not_timed_in_the_attack_table(store, tmp_path):
    """Its created-to-finished span would count every pause before a resumption, so "–", never that span."""
    from test_report_store import build_audit
    from trce_audit.reports.collect import collect
    from trce_audit.reports.markdown import render_markdown

    built = build_audit(store, tmp_path / "images")

    def minutes_cell(seconds):
        _timed(store, built.attack_id, 0, 125, seconds=seconds)  # finished 125 minutes after it was created
        if seconds:
            with store.session() as session:
                run = session.get(Run, built.attack_id)
                run.runtime = {**run.runtime, "seconds": 90.0}
        text = render_markdown(collect(store), title="T", command="trce-audit report")
        row = next(line for line in text.split("## Attacks", 1)[1].splitlines() if "| ring-a-bell |" in line)
        return row.rstrip(" |").rsplit("| ", 1)[1]

    assert minutes_cell(False) == "–"
    assert minutes_cell(True) == "1.5"


def test_an_erase_stored_before_runtime_seconds_is_timed_by_its_summary(store):
    """An erase reports its load-and-edit seconds in its summary (orchestration/erase_runs.py) since before
    runs recorded them in runtime; a bool or a negative value is no duration."""
    from trce_audit.reports.collect import collect
    from trce_audit.reports.timing import time_spent

    audit = store.start_run(kind="audit", component="audit", config={"name": "old"})
    for tag, seconds in (("e1", 150.0), ("e2", True), ("e3", -4)):
        run = _run(store, "erase", tag, parent=audit.id, start=0, minutes=30, threads=2, seconds=False)
        with store.session() as session:
            session.get(Run, run).summary = {"seconds": seconds}
    store.complete_run(audit.id, {})
    erase = next(kind for kind in time_spent(collect(store, audit_id=audit.id).runs).kinds if kind.kind == "erase")
    assert (erase.runs, erase.timed, erase.seconds) == (3, 1, 150.0)
