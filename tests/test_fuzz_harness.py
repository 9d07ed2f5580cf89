"""The property suite can fail: with a parser deliberately broken (monkeypatched to raise what a bug would
raise), each kind of property catches it, at the function level as an exception that is not the one-line
refusal, and at the CLI level as exit 3 with the exception's name instead of one `error:` line."""

from __future__ import annotations

import pytest
import test_fuzz_data
import test_fuzz_options
import test_fuzz_spec

import trce_audit.audit.tables as tables
import trce_audit.data.csvfile as csvfile
import trce_audit.parsing as parsing
from trce_audit.records import PromptRow
from trce_audit.store import Store

pytestmark = pytest.mark.fuzz
FAILED = (AssertionError, ExceptionGroup, RuntimeError)


def broken(*args, **kwargs):
    raise RuntimeError("deliberately broken parser")


def test_the_cli_property_catches_a_broken_csv_parser(monkeypatch, tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    store = Store(f"sqlite:///{root / 'trce-audit.sqlite'}")
    store.add_prompt_set("seeds", [PromptRow("a red cross", 1, 7.5)])
    store.close()
    monkeypatch.setattr(csvfile, "parse_seed", broken)
    with pytest.raises(FAILED) as caught:
        test_fuzz_data.test_data_add_and_show_keep_the_house_rule(cli_workspace=root)
    assert "exit 3" in str(caught.value) or "exit 3" in repr(getattr(caught.value, "exceptions", ""))


def test_the_function_property_catches_a_broken_value_parser(monkeypatch):
    monkeypatch.setattr(parsing, "_int", broken)
    with pytest.raises(FAILED):
        test_fuzz_options.test_typed_values_parse_and_print_back_or_are_refused()


def test_the_spec_property_catches_a_broken_table_reader(monkeypatch):
    monkeypatch.setattr(tables, "_check_generation", broken)
    with pytest.raises(FAILED):
        test_fuzz_spec.test_specs_parse_and_round_trip_or_are_refused_in_one_line()
