"""The report in a real browser: it renders (non-blank screenshot), logs no console errors, and a prompt's
<script> does not run. Needs Debian's `chromium` on PATH; skipped with the reason otherwise."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from PIL import Image, ImageStat
from test_report_store import build_audit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install -y chromium)")
CONSOLE = re.compile(r":CONSOLE[:(]")


def _chromium(tmp_path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *args, url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_console_capture_sees_errors(tmp_path):
    """The check below can fail: a page that logs an error and runs a script shows both."""
    page = tmp_path / "control.html"
    page.write_text("<!DOCTYPE html><title>control</title><script>console.error('control-error');"
                    "document.title='ran'</script>")
    result = _chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert "<title>ran</title>" in result.stdout
    assert any("control-error" in line for line in result.stderr.splitlines() if CONSOLE.search(line))


def test_report_renders_in_chromium(cli, store, workspace, tmp_path):
    build_audit(store, workspace.images_dir)
    out = tmp_path / "report.html"
    code, _, err = cli("report", "--out", str(out))
    assert code == 0, err

    dom = _chromium(tmp_path, out.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>Audit 1 — trce-audit report</title>" in dom.stdout  # the prompt's script would set 'pwned'
    assert "data-pwned" not in dom.stdout.split("<body", 1)[1].split(">", 1)[0]
    assert "<script" not in dom.stdout
    assert "&lt;script&gt;document.title='pwned'" in dom.stdout  # shown as text
    console = [line for line in dom.stderr.splitlines() if CONSOLE.search(line)]
    assert console == []
    tradeoff = dom.stdout[dom.stdout.index('id="tradeoff-chart"'):]
    assert tradeoff[: tradeoff.index("</svg>")].count('class="point"') == 3  # one point per model, rendered

    shot = tmp_path / "shot.png"
    result = _chromium(tmp_path, out.as_uri(), f"--screenshot={shot}", "--window-size=1280,1800")
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        gray = image.convert("L")
        assert image.size == (1280, 1800)
        assert ImageStat.Stat(gray).stddev[0] > 20  # text, tables and a dark header: far from a blank page
        assert len(gray.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
    assert [line for line in result.stderr.splitlines() if CONSOLE.search(line)] == []
