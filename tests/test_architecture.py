"""docs/architecture.md shows the layer contract the checker enforces, and the package's modules stay small."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import layering

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
MAX_LINES = 400
MAX_MEDIAN = 120


def _module_lengths() -> dict[str, int]:
    """Lines per .py file under trce_audit/, migrations and __init__ files included, blank and comment lines
    included: the length a reader scrolls, as `wc -l` counts it (a last line without a newline counts too)."""
    return {p.relative_to(REPO).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
            for p in sorted((REPO / layering.PACKAGE).rglob("*.py"))}


def test_the_docs_layers_block_is_the_checkers_contract():
    blocks = re.findall(r"^```layers\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, f"{DOC.name} needs exactly one fenced block with the info string `layers`"
    assert tuple(line.strip() for line in blocks[0].splitlines() if line.strip()) == layering.LAYERS


def test_no_module_passes_400_lines():
    long = {path: n for path, n in _module_lengths().items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_median_module_stays_at_most_120_lines():
    lengths = _module_lengths()
    assert statistics.median(lengths.values()) <= MAX_MEDIAN, (
        f"median of {len(lengths)} modules is {statistics.median(lengths.values())} lines")
