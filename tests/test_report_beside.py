"""`report --beside AUDIT`: one audit's numbers beside another's, model by model and measure by measure;
`report --section NAME`: several reports in one Markdown document, each regenerated on its own."""

from __future__ import annotations

import re

import pytest
from test_report_store import build_audit

from trce_audit.reports import sections


@pytest.fixture
def two_audits(store, workspace):
    """The same models and attack twice: `other` first, then `this` with trce weaker at every step."""
    other = build_audit(store, workspace.images_dir / "other", audit_config={"name": "other", "nonce": "1"})
    this = build_audit(store, workspace.images_dir / "this", trce_explicit=(0,), trce_after=(0, 1, 2, 3),
                       audit_config={"name": "this", "nonce": "2"})
    return this, other


def _table(text: str) -> dict[tuple[str, str], list[str]]:
    start = text.index("| model | measure |")
    rows = {}
    for line in text[start:].split("\n")[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[(cells[0], cells[1])] = cells[2:]
    return rows


def _beside(cli, out, audit_id, beside) -> str:
    code, _, err = cli("report", "--out", str(out), "--audit", str(audit_id), "--beside", str(beside))
    assert code == 0, err
    return out.read_text()


def test_markdown_sets_each_measure_beside_its_counterpart(cli, two_audits, tmp_path):
    this, other = two_audits
    text = _beside(cli, tmp_path / "both.md", this.audit_id, "other")
    assert f"## Beside other (audit {other.audit_id})" in text
    rows = _table(text)
    # base pairs with base, an erased model with the same key; an attack by its name
    assert rows[("base", "ASR pocket-explicit")][:2] == ["75.0% [30, 95]", "75.0% [30, 95]"]
    assert rows[("trce", "ASR pocket-explicit")] == ["25.0% [5, 70]", "0.0% [0, 49]", "+25.0", "yes"]
    assert rows[("trce", "ASR after ring-a-bell (pocket-explicit)")][:3] == ["100.0% [51, 100]", "50.0% [15, 85]", "+50.0"]
    assert rows[("esd", "preserve pocket-preserve")] == ["80.0%", "80.0%", "+0.0", "–"]  # no interval stored: not judged
    assert list(rows).index(("trce", "preserve pocket-preserve")) < list(rows).index(("trce", "ASR after ring-a-bell (pocket-explicit)"))
    # by run id as well as by spec name
    assert _table(_beside(cli, tmp_path / "by-id.md", this.audit_id, other.audit_id)) == rows


def test_html_has_the_same_table(cli, two_audits, tmp_path):
    this, other = two_audits
    html = _beside(cli, tmp_path / "both.html", this.audit_id, "other")
    table = html[html.index('id="beside-h"'): html.index("</table>", html.index('id="beside-h"'))]
    assert f"Beside other (audit {other.audit_id})" in table
    assert "ASR after ring-a-bell (pocket-explicit)" in table and "+50.0" in table


def test_intervals_that_do_not_meet_are_marked(store, workspace):
    from trce_audit.reports.beside import beside_lines
    from trce_audit.reports.collect import collect

    other = build_audit(store, workspace.images_dir / "o", trce_after=(), audit_config={"name": "o"})
    this = build_audit(store, workspace.images_dir / "t", trce_explicit=(0, 1, 2, 3), trce_after=(0, 1, 2, 3), audit_config={"name": "t"})
    lines = {(line.model, line.measure): line for line in beside_lines(collect(store, audit_id=this.audit_id), collect(store, audit_id=other.audit_id))}
    after = lines[("trce", "ASR after ring-a-bell (pocket-explicit)")]
    assert after.difference == 1.0 and after.intervals_overlap is False  # 4 of 4 against 0 of 4: [51, 100] and [0, 49]


@pytest.mark.parametrize(("args", "message"), [
    (["--beside", "no-such-spec"], "no audit of a spec named 'no-such-spec'"),
    (["--section", "Bad Name"], "--section 'Bad Name'"),
    (["--section", "flux", "--out-html"], "--section writes into a Markdown document"),
])
def test_bad_beside_or_section_is_one_line_exit_2(cli, two_audits, tmp_path, args, message):
    out = tmp_path / ("r.html" if "--out-html" in args else "r.md")
    code, _, err = cli("report", "--out", str(out), *[a for a in args if a != "--out-html"])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_section_is_replaced_in_place_and_the_rest_kept(cli, two_audits, tmp_path):
    this, other = two_audits
    out = tmp_path / "results.md"
    assert cli("report", "--out", str(out), "--audit", str(other.audit_id))[0] == 0
    whole = out.read_text()
    assert cli("report", "--out", str(out), "--audit", str(this.audit_id), "--section", "this", "--beside", "other")[0] == 0
    text = out.read_text()
    assert text.startswith(whole.rstrip("\n")) and text.count("<!-- trce-audit section this -->") == 1
    section = text[text.index("<!-- trce-audit section this -->"):]
    assert "\n## Audit results: this\n" in section and "\n### Beside other" in section  # one level below the document's
    assert not any(line.startswith("# ") for line in section.splitlines())
    # writing the section again replaces it; writing the whole document again keeps it
    assert cli("report", "--out", str(out), "--audit", "this", "--section", "this")[0] == 0  # the audit by its spec name
    again = out.read_text()
    assert again.count("<!-- trce-audit section this -->") == 1 and "### Beside" not in again
    assert cli("report", "--out", str(out), "--audit", str(other.audit_id))[0] == 0
    assert out.read_text() == again


def test_merged_keeps_every_other_section_in_order():
    one = sections.merged(None, "# A\ntext a\n", "a")
    two = sections.merged(one, "# B\n", "b")
    assert sections.sections_of(two) == [one, sections.merged(None, "# B\n", "b")]
    assert sections.merged(two, "# A2\n", "a").index("## A2") < sections.merged(two, "# A2\n", "a").index("## B")
    assert sections.merged(two, "# Whole\n", None) == "# Whole\n\n" + "\n".join(sections.sections_of(two))


def test_a_transfer_pairs_with_the_attack_it_replays(cli, store, two_audits, tmp_path):
    from trce_audit.store.schema import Run

    this, _ = two_audits
    with store.session() as session:
        run = session.get(Run, this.attack_id)
        run.summary = {**run.summary, "transfer_from": {"spec": "pocket"}}
    text = _beside(cli, tmp_path / "t.md", this.audit_id, "other")
    assert "| trce | ring-a-bell (transfer from pocket) |" in text  # the attack table keeps the source
    assert _table(text)[("trce", "ASR after ring-a-bell (pocket-explicit)")][:2] == ["100.0% [51, 100]", "50.0% [15, 85]"]


def test_repeated_runs_and_several_unerased_models_keep_their_own_lines(store, two_audits):
    import dataclasses

    from trce_audit.reports.beside import beside_lines
    from trce_audit.reports.collect import collect

    this, other = two_audits
    here, there = collect(store, audit_id=this.audit_id), collect(store, audit_id=other.audit_id)
    attack = next(row for row in here.rows if row.attack)
    here.rows.append(dataclasses.replace(attack, attack=f"{attack.attack}#999", attack_run_id=999))
    measures = [line.measure for line in beside_lines(here, there) if line.model == "trce" and "after" in line.measure]
    assert measures == ["ASR after ring-a-bell (pocket-explicit)", "ASR after ring-a-bell (pocket-explicit) (run 2)"]
    # esd read as a second un-erased model: no model is "base" then, each keeps its key
    plain = {model.key: dataclasses.replace(model, eraser=None) if model.key == "esd" else model for model in there.models}
    there = dataclasses.replace(there, models=list(plain.values()),
                                rows=[dataclasses.replace(row, model=plain[row.model.key]) for row in there.rows])
    models = {line.model for line in beside_lines(here, there) if line.there is not None}
    assert {"pocket", "esd", "trce"} <= models and "base" not in models


def test_html_cells_are_in_the_order_of_their_headings(cli, two_audits, tmp_path):
    this, other = two_audits
    html = _beside(cli, tmp_path / "both.html", this.audit_id, "other")
    table = html[html.index('id="beside-h"'): html.index("</table>", html.index('id="beside-h"'))]
    heads = re.findall(r'<th scope="col">([^<]*)</th>', table)
    assert heads[2:4] == [f"this (audit {this.audit_id})", f"other (audit {other.audit_id})"]
    row = table[table.index("<td>ASR pocket-explicit</td>", table.index('<th scope="row">trce</th>')):]
    cells = re.findall(r'<td class="num">([^<]*)', row)[:3]
    assert [cell.strip() for cell in cells] == ["25.0%", "0.0%", "+25.0"]


def test_a_document_with_broken_markers_is_refused_and_kept(cli, two_audits, tmp_path):
    this, _ = two_audits
    out = tmp_path / "doc.md"
    broken = "# Mine\n<!-- trce-audit section this -->\nhalf a section, its end marker lost\n"
    out.write_text(broken)
    code, _, err = cli("report", "--out", str(out), "--audit", str(this.audit_id), "--section", "this")
    assert code == 2 and "section 'this' of" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == broken


def test_a_section_at_the_very_end_without_a_newline_is_still_one_section():
    block = sections.merged(None, "# A\n", "a").rstrip("\n")
    assert sections.merged(block, "# A2\n", "a").count("trce-audit section a -->") == 1
    assert "## A" in sections.merged(block, "# Whole\n", None)
