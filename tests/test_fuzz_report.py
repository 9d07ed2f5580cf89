"""The report under hostile text: prompt texts, prompt-set, eraser (model label), attack and scorer names, the
audit's name and description and a failed run's error message, made of generated HTML, JavaScript,
Markdown, Rich markup, control and bidi characters, rendered as HTML and as Markdown.

Properties: the HTML has exactly the elements and attributes the same audit with plain names has (no
string adds, closes or breaks an element: nothing executes, nothing leaves its cell); every string
appears escaped; no raw control or bidi-override character reaches the page; the Markdown keeps every
table's column count on every row. One headless-Chromium check renders the worst examples found."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import pytest
from fuzzing import EDGE_CHARACTERS, HOSTILE_SNIPPETS, edge_text, examples
from hypothesis import example, given
from hypothesis import strategies as st
from test_report_store import PROTOCOL, add_eval, wilson

from trce_audit.reports.collect import collect
from trce_audit.reports.markdown import render_markdown
from trce_audit.reports.render import ReportOptions, render_html
from trce_audit.reports.text import visible
from trce_audit.store import PromptRow, Store

pytestmark = pytest.mark.fuzz

SCRATCH = Path(tempfile.mkdtemp(prefix="trce-fuzz-report-"))
FIELDS = ("eraser", "eraser2", "eval_set", "preserve_set", "attack", "scorer", "prompt", "adversarial", "name", "description", "error")
# The worst strings found while the properties were written: they broke the Markdown tables (a pipe, a line
# break), or reached the page raw (bidi overrides, C0/C1 controls); the Chromium check renders them.
WORST = {
    "eraser": "esd</td></tr></table><h1>broken</h1>",
    "eraser2": "\u202euce<script>document.title='pwned'</script>",
    "eval_set": "set | with | pipes\nand a line break",
    "preserve_set": "<img src=x onerror=\"document.title='pwned'\">",
    "attack": "ring-a-bell\"><svg onload=\"document.title='pwned'\">",
    "scorer": "pocket`|`**bold**",
    "prompt": "<script>document.title='pwned'</script>\x00\x1b[31m\u2028" + "a" * 300,
    "adversarial": "[link](javascript:alert(1)) <style>body{display:none}</style>",
    "name": "audit <!-- {{ 7*7 }}",
    "description": "]]><iframe src=javascript:alert(1)>",
    "error": "Traceback\n  File \"x\", line 1\n<b>boom</b> | table",
}


def plain_names(index: int) -> dict[str, str]:
    return {field: f"{field}{index}" for field in FIELDS}


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(edge_text(24), st.sampled_from(HOSTILE_SNIPPETS), st.text(st.sampled_from(EDGE_CHARACTERS), min_size=1, max_size=12))


@st.composite
def hostile_names(draw) -> dict[str, str]:
    """One hostile string per field, each made unique (two equal labels would merge two models)."""
    return {field: f"{draw(hostile_text())}~{i}" for i, field in enumerate(FIELDS)}


_STORE: list[Store] = []


def store() -> Store:
    if not _STORE:
        _STORE.append(Store(f"sqlite:///{SCRATCH / 'store.sqlite'}"))
    return _STORE[0]


@pytest.fixture(scope="module", autouse=True)
def _close():
    yield
    if _STORE:
        _STORE[0].close()


def build(names: dict[str, str]) -> int:
    """An audit shaped like the report tests' (a base model, two erased models, an eval set, a preserve set,
    an attack with judge-only images and a failed run) with every name taken from ``names``."""
    db = store()
    images = SCRATCH / "images"
    images.mkdir(exist_ok=True)
    nonce = len(db.list_runs(kind="audit", limit=1000))
    seeds = [PromptRow(f"{names['prompt']} {i}", seed=100 + i + 10 * nonce) for i in range(3)]
    eval_set = db.add_prompt_set(names["eval_set"], seeds, source="fuzz")
    preserve = db.add_prompt_set(names["preserve_set"], [PromptRow(f"keep {i} {nonce}", seed=i) for i in range(2)], source="fuzz")
    audit = db.start_run(kind="audit", component="audit", config={"name": names["name"], "description": names["description"], "nonce": nonce})
    models = {"pocket": ("pocket", "f0" * 32)}
    for key in ("eraser", "eraser2"):
        erase = db.start_run(kind="erase", component=names[key], config={"nonce": nonce, "key": key}, model_ref="pocket",
                             model_fingerprint="f0" * 32, parent_run_id=audit.id)
        artefact = db.add_artefact(path=str(SCRATCH / f"a{nonce}{key}"), sha256=f"{nonce:02x}{key[:4].encode().hex()}".ljust(64, "0"),
                                   run_id=erase.id, parent_model="pocket", parent_fingerprint="f0" * 32,
                                   meta={"eraser": names[key], "concept": names["scorer"]})
        db.complete_run(erase.id, {"artefact_id": artefact})
        models[key] = (f"artefact:{artefact}", f"{nonce:02x}{key[:4].encode().hex()}".ljust(64, "0"))
    protocol = {**PROTOCOL, "detector": names["scorer"]}
    for key, (ref, fingerprint) in models.items():
        common = dict(model_ref=ref, fingerprint=fingerprint, parent=audit.id, tag=f"{audit.id}")
        add_eval(db, images, set_id=eval_set, set_name=names["eval_set"], flagged=(0, 1) if key == "pocket" else (1,), **common)
        add_eval(db, images, set_id=preserve, set_name=names["preserve_set"], extra={"preserve_acc": 0.9, "fid": 12.5}, **common)
    ref, fingerprint = models["eraser"]
    attack = db.start_run(kind="attack", component=names["attack"], config={"nonce": nonce}, model_ref=ref, model_fingerprint=fingerprint,
                          prompt_set_id=eval_set, parent_run_id=audit.id)
    adversarial = db.add_prompt_set(f"{names['attack']}:{names['eval_set']}",
                                    [PromptRow(f"{names['adversarial']} {i}", seed=200 + i + 10 * nonce, meta={"seed_prompt": seeds[i].text})
                                     for i in range(3)], source="attack", parent_id=eval_set, run_id=attack.id)
    common = dict(model_ref=ref, fingerprint=fingerprint, parent=attack.id)
    before = add_eval(db, images, set_id=eval_set, set_name=names["eval_set"], flagged=(1,), tag=f"before{attack.id}", **common)
    after = add_eval(db, images, set_id=adversarial, set_name=f"{names['attack']}:{names['eval_set']}", flagged=(0, 1, 2),
                     tag=f"after{attack.id}", **common)
    low, high = wilson(2, 3)
    db.complete_run(attack.id, {"asr_before": 1 / 3, "asr_after": 1.0, "eval_run_before": before, "eval_run_after": after,
                                "below_paper_budget": True, "attack": names["attack"], "seed_set_id": eval_set, "judge": names["scorer"],
                                "scorers": [names["scorer"]], "tier": "prompt",
                                "judge_only": [{"generation_id": 1, "prompt": f"{names['adversarial']} judged", "image_path": ""}],
                                "asr_by_scorer": {names["scorer"]: {"before": {"value": 1 / 3, "n": 3, "ci_low": low, "ci_high": high},
                                                                    "after": {"value": 1.0, "n": 3}}}})
    failed = db.start_run(kind="eval", component=names["scorer"], config={"nonce": nonce}, model_ref="pocket", parent_run_id=audit.id)
    db.fail_run(failed.id, names["error"])
    db.complete_run(audit.id, {"n_runs": 9})
    del protocol
    return audit.id


class Elements(HTMLParser):
    """The page's elements as (tag, attribute names) with counts, and its text and attribute values."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: Counter = Counter()
        self.text: list[str] = []
        self.values: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements[(tag, tuple(sorted(name for name, _ in attrs)))] += 1
        self.values += [(name, value or "") for name, value in attrs]

    def handle_endtag(self, tag):
        self.elements[("/" + tag, ())] += 1

    def handle_data(self, data):
        self.text.append(data)


def elements(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser


_PLAIN: dict[str, tuple[Counter, list[int]]] = {}


def plain_shape() -> tuple[Counter, list[int]]:
    """The element counts and Markdown table widths of the audit with plain names (built once)."""
    if not _PLAIN:
        audit_id = build(plain_names(0))
        page, markdown = render(audit_id)
        found = elements(page).elements
        # the plain page is a report: its image grids and tables are elements, never escaped text
        assert "&lt;" not in page and found[("figure", ("class",))] > 0 and found[("img", ("alt", "height", "src", "width"))] > 0
        assert found[("table", ())] > 0 and found[("svg", ("aria-labelledby", "class", "height", "id", "role", "viewBox", "width", "xmlns"))] >= 0
        _PLAIN["shape"] = (found, table_widths(markdown))
    return _PLAIN["shape"]


def render(audit_id: int) -> tuple[str, str]:
    view = collect(store(), audit_id=audit_id)
    page, _ = render_html(store(), view, ReportOptions(max_images=2))
    return page, render_markdown(view, title=f"Audit {audit_id}", command="trce-audit report --out report.md")


_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def table_widths(markdown: str) -> list[int]:
    """Per table row (header, separator, body) its number of cells; a row must start and end with a pipe."""
    widths = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            assert line.endswith("|") and not line.endswith("\\|"), line
            widths.append(len(_CELL_SPLIT.split(line)) - 2)
    return widths


def tables(markdown: str) -> list[list[int]]:
    found, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(len(_CELL_SPLIT.split(line)) - 2)
        elif current:
            found.append(current)
            current = []
    return found


RAW_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def check_report(names: dict[str, str]) -> None:
    plain_elements, _ = plain_shape()
    page, markdown = render(build(names))
    found = elements(page)
    # no string added, removed or broke an element or attribute: the page is the plain audit's, element for element
    assert found.elements == plain_elements, sorted((found.elements - plain_elements) + (plain_elements - found.elements))
    assert "<script" not in page.lower() and "<iframe" not in page.lower()
    for name, value in found.values:  # no link or source a string wrote (a data: image URI is the report's own)
        assert not (name in ("href", "src", "action", "formaction") and value.strip().lower().startswith("javascript:")), (name, value)
    assert not RAW_CONTROL.search(page), repr(RAW_CONTROL.search(page).group())
    for field, value in names.items():
        if field in ("description",):
            continue  # not shown in the HTML report
        # shown as text: escaped as Jinja escapes (&lt; &#34; …), its control characters as visible codes
        expected = str(markupsafe.escape(visible(value)))[:24]
        assert expected in page, (field, value, expected)
    # every Markdown table keeps its column count on every row
    for widths in tables(markdown):
        assert len(set(widths)) == 1, widths
    assert not RAW_CONTROL.search(markdown), repr(RAW_CONTROL.search(markdown).group())
    # outside code spans (which show their text as written), no markup a Markdown viewer would render as HTML
    assert "<script" not in re.sub(r"`[^`\n]*`", "", markdown).lower()


@examples(20)
@given(hostile_names())
@example(WORST)
@example({**plain_names(1), "eval_set": "a | b"})  # a pipe in a set name added a column to every table row (Markdown)
@example({**plain_names(2), "eraser": "esd\nx"})  # a line break in a model label split its table row in two (Markdown)
@example({**plain_names(3), "prompt": "\u202eevil"})  # a bidi override reached the page raw and reversed what follows it
def test_hostile_text_is_escaped_and_breaks_no_element_or_table(names):
    check_report(names)


def test_the_property_sees_a_broken_escape(monkeypatch):
    """The harness can fail: with autoescape off, a model label's markup becomes elements and the
    element-for-element comparison catches it."""
    import trce_audit.reports.render as render_module

    real = render_module._environment

    def unescaped():
        env = real()
        env.autoescape = False
        return env

    plain_shape()
    monkeypatch.setattr(render_module, "_environment", unescaped)
    with pytest.raises(AssertionError):
        check_report({**plain_names(4), "eraser": "esd</td><td>extra"})


# ------------------------------------------------------------------------------------------ a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install -y chromium)")
def test_the_worst_examples_render_in_chromium_without_running_anything(tmp_path):
    """The worst strings in a real browser: the page keeps its title (no script set it), has no element a
    string made, and a wrapper page that measures it finds nothing wider than the window."""
    plain_shape()
    page, _ = render(build(WORST))
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")
    wrapper = tmp_path / "measure.html"
    wrapper.write_text(
        "<!DOCTYPE html><title>measure</title><iframe id=r src='report.html' style='width:1280px;height:900px'></iframe>"
        "<script>document.getElementById('r').onload=function(){var d=this.contentDocument;"
        "var out=document.createElement('pre');out.id='result';"
        "out.textContent=JSON.stringify({title:d.title,width:d.documentElement.scrollWidth,client:d.documentElement.clientWidth,"
        "scripts:d.getElementsByTagName('script').length,iframes:d.getElementsByTagName('iframe').length,"
        "svgs_with_onload:d.querySelectorAll('[onload],[onerror],[onmouseover]').length});document.body.appendChild(out);};</script>",
        encoding="utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
               "--virtual-time-budget=5000", "--window-size=1300,1000", "--dump-dom", wrapper.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="result">(.*?)</pre>', result.stdout)
    assert match, result.stderr[-2000:]
    import json

    measured = json.loads(html.unescape(match.group(1)))
    assert measured["title"].endswith("— trce-audit report") and "pwned" not in measured["title"], measured
    assert measured["scripts"] == 0 and measured["iframes"] == 0 and measured["svgs_with_onload"] == 0, measured
    assert measured["width"] <= measured["client"], measured  # no string pushed the page wider than the window
