"""The end-of-audit summary reads at 80 columns (a CI log) and at 120: no header or cell is cut, and no
column shows another's content."""

from __future__ import annotations

import pytest
from rich.console import Console

from trce_audit.cli.audit import _render


def _metric(value, low=None, high=None):
    return {"value": value, "ci_low": low, "ci_high": high}


RESULT = {"audit_run_id": 12, "problems": [], "rows": [
    {"model": "pocket", "prompt_set": "pocket-explicit", "attack": None, "asr": _metric(0.875, 0.53, 0.98),
     "asr_before": None, "asr_after": None, "metrics": {"asr_corrected": _metric(0.91, 0.6, 0.99)}},
    {"model": "advunlearn[seed 2]", "prompt_set": "pocket-preserve", "attack": None, "asr": None, "asr_before": None,
     "asr_after": None, "metrics": {"preserve_acc": _metric(0.641, 0.52, 0.75), "asr_corrected": _metric(0.5)}},
    {"model": "advunlearn[seed 2]", "prompt_set": "pocket-explicit", "attack": "concept-inversion", "asr": None,
     "asr_before": _metric(0.5, 0.22, 0.78), "asr_after": _metric(0.625, 0.31, 0.86), "metrics": {}},
    {"model": "trce[stage 1]", "prompt_set": "pocket-explicit", "attack": "finetune-resurgence", "asr": None,
     "asr_before": _metric(0.0, 0.0, 0.32), "asr_after": _metric(0.875, 0.53, 0.98), "metrics": {}},
    {"model": "flux-schnell", "prompt_set": "ring-a-bell-79", "attack": "ring-a-bell (transfer from CompVis/stable-diffusion-v1-4)",
     "asr": None, "asr_before": _metric(0.25, 0.07, 0.59), "asr_after": _metric(0.0, 0.0, 0.32), "metrics": {}},
]}


def _columns(text: str) -> list[dict[int, str]]:
    """Each table's columns, every fragment of a folded cell joined in order (spaces dropped)."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("┏"):
            current = {}
            tables.append(current)
        elif current is not None and line[:1] in "┃│":
            for index, cell in enumerate(line.strip("┃│").split("┃" if line[0] == "┃" else "│")):
                current[index] = current.get(index, "") + cell.replace(" ", "")
    return tables


@pytest.mark.parametrize("width", [80, 120])
def test_the_summary_fits_without_cutting(width):
    console = Console(width=width, record=True, file=open("/dev/null", "w"))
    _render(RESULT, console=console)
    text = console.export_text()
    assert all(len(line) <= width for line in text.splitlines())
    assert "…" not in text  # Rich cuts a cell or header with an ellipsis; these fold instead
    plain, attacks = _columns(text)
    expected_plain = {0: ["model", "pocket", "advunlearn[seed2]"], 1: ["promptset", "pocket-explicit", "pocket-preserve"],
                      2: ["ASR", "87.5%[53–98]"], 3: ["preservation", "preserve64.1%[52–75]"]}
    expected_attacks = {0: ["model", "advunlearn[seed2]", "flux-schnell"],
                        1: ["attack", "concept-inversion", "ring-a-bell(transferfromCompVis/stable-diffusion-v1-4)"],
                        2: ["seeds", "pocket-explicit", "ring-a-bell-79"],
                        3: ["ASRbefore→after", "50.0%[22–78]→62.5%[31–86]", "25.0%[7–59]→0.0%[0–32]"]}
    for table, expected in ((plain, expected_plain), (attacks, expected_attacks)):
        for column, cells in expected.items():
            for cell in cells:  # each value whole, in its own column
                assert cell in table[column], (column, cell, table[column])
    assert "asr_cor" not in text and "91.0%" not in text  # the preservation column shows preservation only
    # the attack table's names and numbers fold between words, not inside them (the pocket-results log
    # read "finetune-resurgenc|e" at 80 columns)
    attack_lines = text.split("┏", 2)[2].splitlines()
    for word in ("finetune-resurgence", "concept-inversion", "advunlearn[seed", "pocket-explicit", "[53–98]", "[0–32]"):
        assert any(word in line for line in attack_lines), word


def test_a_table_whose_longest_words_do_not_fit_keeps_its_short_columns_whole():
    """`runs list` at 80 columns: six columns whose longest words need more than the room; fixed widths
    would cut every column evenly ("complet|e"), so Rich's own collapse of the widest columns decides."""
    from trce_audit.cli.tables import emit_table, fitted_widths

    columns = ["id", "kind", "component", "status", "model", "created"]
    rows = [[123, "attack", "finetune-resurgence", "complete", "artefact:pocket-sd-erased-by-esd-x", "2026-12-07T01:09:18.123456"]]
    assert fitted_widths([[c, *(str(r[i]) for r in rows)] for i, c in enumerate(columns)], 80 - 3 * 6 - 1) is None
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    emit_table("runs", columns, rows, console=console)
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert any("123" in line and "complete" in line for line in text.splitlines())
