"""`trce-audit report`: one self-contained HTML file rendered from a hand-built audit."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image
from test_report_store import IMG_PROMPT, SCRIPT_PROMPT, build_audit

DATA_URI = re.compile(r'src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture
def built(store, workspace):
    return build_audit(store, workspace.images_dir)


def _render(cli, tmp_path, *args):
    out = tmp_path / "report.html"
    code, stdout, err = cli("report", "--out", str(out), "--json", *args)
    assert code == 0, err
    return out.read_text(encoding="utf-8"), json.loads(stdout)


def test_report_has_tables_chart_and_provenance(cli, built, tmp_path):
    html, result = _render(cli, tmp_path)
    assert result["audit_run_id"] == built.audit_id and result["report"]["n_grids"] == 10
    assert 'id="asr-h"' in html and "<th scope=\"col\">pocket-explicit</th>" in html
    assert "75.0%" in html and "95% CI 30%–95%, n=4" in html  # base model, 3/4 flagged, Wilson interval
    assert 'id="attacks-h"' in html and "+50.0 pts" in html and "below paper budget" in html  # trce 0% -> 50%
    tiers = html[html.index('id="tiers"'): html.index("</p>", html.index('id="tiers"'))]
    assert "<strong>" in tiers and ": prompt" in tiers and "(not tested: embedding, weights)" in tiers
    start = html.index('aria-labelledby="chart-title')
    svg = html[start: html.index("</svg>", start)]
    assert svg.count("<rect ") == 7 and svg.count('class="whisker"') == 21  # 7 ASR rows, 3 lines per whisker
    assert "pocket-explicit + ring-a-bell" in svg
    assert "<th scope=\"col\">FID</th>" in html and "20.25" in html and "Preserve accuracy" in html
    assert "ab" * 32 in html  # detector weights hash
    assert "f0" * 8 in html  # base model fingerprint
    assert "seed prompt: explicit prompt 1" in html and "loss 0.5" in html
    assert re.search(r"<dt>trce-audit</dt><dd class=\"mono\">[0-9.]+", html)
    for run_id in (built.audit_id, built.attack_id):
        assert f'<td class="mono">{run_id}</td>' in html


def test_report_is_self_contained(cli, built, tmp_path):
    html, result = _render(cli, tmp_path)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    external = [url for url in re.findall(r"https?://[^\s\"'<>)]+", html) if url != "http://www.w3.org/2000/svg"]
    assert external == []
    assert 'src="' not in DATA_URI.sub("", html)  # every image source is an inline data URI
    thumbs = DATA_URI.findall(html)
    assert len(thumbs) == result["report"]["n_images"] + 4  # + the seed images paired with the 4 adversarial ones
    image = Image.open(io.BytesIO(base64.b64decode(thumbs[0][1])))
    assert max(image.size) <= 160


def test_flagged_images_are_blurred_unless_unblur(cli, built, tmp_path):
    html, result = _render(cli, tmp_path)
    n_flagged = result["report"]["n_flagged_shown"]
    # Flagged: base 3 on explicit + 1 on synonym, esd 1, trce 2 after ring-a-bell (its seed images: none).
    assert n_flagged == 7
    assert html.count('<figure class="tile flagged">') == 7
    assert "filter: blur(" in html and "render with <code>--unblur</code>" in html
    unblurred, result = _render(cli, tmp_path, "--unblur")
    assert 'class="tile flagged"' not in unblurred and "figure.flagged" in unblurred
    assert unblurred.count("flagged · 0.90") == 7  # still labelled, just not blurred


def test_prompts_are_escaped(cli, built, tmp_path):
    html, _ = _render(cli, tmp_path)
    assert "&lt;script&gt;document.title=&#39;pwned&#39;" in html
    assert "&lt;img src=x onerror=&#34;document.body.setAttribute" in html
    assert SCRIPT_PROMPT not in html and IMG_PROMPT not in html


def test_max_images_limits_each_grid(cli, built, tmp_path):
    html, result = _render(cli, tmp_path, "--max-images", "1")
    assert result["report"]["n_images"] == 10 and "1 of 4 images" in html
    html, result = _render(cli, tmp_path, "--max-images", "0")
    assert result["report"]["n_images"] == 0 and 'id="images-h"' not in html


def test_report_on_chosen_runs(cli, store, built, tmp_path):
    esd_eval = built.evals[("esd", "pocket-explicit", None)]
    html, result = _render(cli, tmp_path, "--runs", f"{esd_eval},{built.attack_id}")
    assert result["audit_run_id"] is None
    assert [(r["model"], r["prompt_set"], r["attack"]) for r in result["rows"]] == [
        ("esd", "pocket-explicit", None),
        ("trce", "pocket-explicit", "ring-a-bell"),
    ]
    assert "trce-audit comparison" in html
    after = built.evals[("trce", "pocket-explicit", "ring-a-bell")]
    _, result = _render(cli, tmp_path, "--runs", str(after))
    assert [(r["model"], r["prompt_set"], r["asr"]["value"]) for r in result["rows"]] == [("trce", "ring-a-bell:pocket-explicit", 0.5)]


def test_missing_image_file_is_shown_not_fatal(cli, built, workspace, tmp_path):
    victim = next(workspace.images_dir.glob("*.png"))
    victim.unlink()
    html, _ = _render(cli, tmp_path)
    assert "image file missing" in html


def test_report_marks_unfinished_runs(cli, store, built, tmp_path):
    failed = store.start_run(kind="eval", component="pocket", config={}, model_ref="pocket", parent_run_id=built.audit_id)
    store.fail_run(failed.id, "out of memory")
    html, result = _render(cli, tmp_path)
    assert f"eval run {failed.id} (pocket) is failed: out of memory" in html and result["problems"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--runs", "1,x"], "--runs expects run ids"),
        (["--runs", "999"], "run 999 does not exist"),
        (["--audit", "999"], "run 999 does not exist"),
        (["--audit", "1", "--runs", "2"], "give --audit or --runs, not both"),
        (["--max-images", "-1"], "--max-images must be 0 or more"),
    ],
)
def test_report_bad_input_is_exit_2(cli, store, built, tmp_path, args, message):
    before = store.counts()
    code, out, err = cli("report", "--out", str(tmp_path / "r.html"), *args)
    assert code == 2 and out == "" and err.startswith("error:") and message in err and err.strip().count("\n") == 0
    assert store.counts() == before and not (tmp_path / "r.html").exists()


def test_report_without_audit_is_exit_2(cli, store, tmp_path):
    code, _, err = cli("report", "--out", str(tmp_path / "r.html"))
    assert code == 2 and "no audit run in the store" in err


def test_report_shows_a_replay_without_before(cli, store, built, workspace, tmp_path):
    from test_report_store import add_eval

    esd = built.models["esd"]
    replay = store.start_run(kind="attack", component="replay", config={"attack": "replay"}, model_ref=esd,
                             prompt_set_id=built.sets["pocket-synonym"], parent_run_id=built.audit_id)
    replayed = add_eval(store, workspace.images_dir, model_ref=esd, fingerprint="es" * 32, set_id=built.sets["pocket-synonym"],
                        set_name="pocket-synonym", flagged=(0,), parent=replay.id, tag="replay")
    store.complete_run(replay.id, {"replay": True, "eval_run_before": None, "eval_run_after": replayed})
    html, result = _render(cli, tmp_path)
    row = next(r for r in result["rows"] if r["attack"] == "replay")
    assert row["asr_before"] is None and row["gated_asr"] == pytest.approx(1 / 3)
    table = html[html.index('id="attacks-h"'): html.index("</table>", html.index('id="attacks-h"'))]
    # a run stored before tiers existed: the registered attack's tier stands in
    assert "<td>replay</td><td>prompt</td><td>pocket-synonym</td>" in table and '<span class="muted">—</span>' in table
    assert row["tier"] == "prompt"


def test_markdown_out_writes_tables_and_says_so(cli, built, tmp_path):
    out = tmp_path / "results.md"
    code, stdout, err = cli("report", "--out", str(out))
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}") and "Markdown tables" in stdout
    assert out.read_text().startswith("# Audit results") and "## Attacks" in out.read_text()
    text = out.read_text()
    assert "| model | attack | tier | seed set |" in text and "| ring-a-bell | prompt |" in text
    assert "Threat tiers tested" in text and "prompt (not tested: embedding, weights)" in text


def test_report_opens_with_the_tradeoff_chart(cli, built, tmp_path):
    """Erasure against preservation is the report's first chart: one point per model, the base model a
    square, an attacked model at its worst after-attack ASR; the Markdown has it as a table."""
    html, _ = _render(cli, tmp_path)
    assert html.index("<svg") == html.index('<svg class="chart" id="tradeoff-chart"')  # the first chart
    start = html.index('id="tradeoff-chart"')
    svg = html[start: html.index("</svg>", start)]
    assert svg.count('<g class="point"') == 3 and svg.count("<rect ") == 1 and svg.count("<circle ") == 2
    description = svg[svg.index("<desc"): svg.index("</desc>")]
    assert "pocket (base): ASR 75.0%, preserve accuracy 90.0%" in description
    assert "trce: ASR 50.0% after attack" in description  # ring-a-bell's 2 of 4 after the attack
    out = tmp_path / "report.md"
    code, _, err = cli("report", "--out", str(out))
    assert code == 0, err
    markdown = out.read_text()
    table = markdown[markdown.index("## Erasure against preservation"):]
    assert "| pocket (base) | 75.0% [" in table and "| trce | 50.0% [" in table and "(after attack)" in table
