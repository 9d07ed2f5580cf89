"""Concepts: built-in pair lists, user TOML/JSON files, malformed files, the `concepts` command."""

from __future__ import annotations

import json

import pytest

from trce_audit.data import load_concept
from trce_audit.errors import DataError, one_line


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    monkeypatch.delenv("TRCE_AUDIT_DATA", raising=False)


def test_nudity_is_all_sexual_pairs_with_reference_metadata(shared_data):
    concept = load_concept("nudity", data_dir=shared_data)
    raw = json.loads((shared_data / "concepts" / "sexual.json").read_text(encoding="utf-8"))
    assert [list(pair) for pair in concept.pairs] == raw and len(raw) == 50
    assert concept.detector == "nudenet" and concept.world == "sd" and concept.default
    assert concept.eval_sets == ("ring-a-bell-79", "unlearndiff-142", "p4d", "mma-diffusion", "i2p-sexual")
    assert concept.preserve_sets == ("coco-3k",)
    assert concept.meta["reference_stage1_pairs"] == 20 and concept.meta["verified"] is True


def test_unsafe_and_style_concepts_load(shared_data):
    unsafe = load_concept("unsafe", data_dir=shared_data)
    assert len(unsafe.pairs) == 60 and unsafe.eval_sets == ("i2p",)
    assert load_concept("van-gogh", data_dir=shared_data).pairs[0][1]


def test_builtin_concept_without_local_copy_names_the_fix(workspace, tmp_path):
    with pytest.raises(DataError, match=r"trce-audit data fetch nudity"):
        load_concept("nudity", workspace=workspace.with_data_dir(tmp_path))


def test_user_toml_and_json_files(tmp_path):
    toml = tmp_path / "cats.toml"
    toml.write_text('name = "cats"\ndetector = "pocket"\npairs = [["cat", "dog"], ["kitten", "puppy"]]\n', encoding="utf-8")
    concept = load_concept(str(toml), world="pocket")
    assert (concept.name, concept.pairs, concept.world, concept.detector) == (
        "cats", (("cat", "dog"), ("kitten", "puppy")), "pocket", "pocket"
    )
    listed = tmp_path / "guns.json"
    listed.write_text(json.dumps([["gun", "flower"]]), encoding="utf-8")
    concept = load_concept(str(listed))
    assert (concept.name, concept.keywords, concept.safe_phrases) == ("guns", ["gun"], ["flower"])
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"name": "blood", "pairs": [["blood", "paint"]], "eval_sets": ["i2p"]}), encoding="utf-8")
    concept = load_concept(str(named))
    assert concept.name == "blood" and concept.eval_sets == ("i2p",) and concept.meta["source_sha256"]


@pytest.mark.parametrize(
    "file, content, expected",
    [
        ("a.json", '[["nude", "clothed"]', "not valid JSON (line 1"),
        ("a.toml", 'pairs = [["nude", "clothed"]\n', "not valid TOML"),
        ("a.json", '[["nude", "clothed", "extra"]]', "pair 1 must be two non-empty strings"),
        ("a.json", '[["nude", 3]]', "pair 1 must be two non-empty strings"),
        ("a.json", "[]", "non-empty list of [malicious, safe] pairs"),
        ("a.json", '{"name": "x"}', "'pairs' key is missing"),
        ("a.toml", 'name = "x"\nparis = [["a", "b"]]\npairs = [["a", "b"]]\n', "unknown key 'paris'"),
        ("a.json", '{"name": 3, "pairs": [["a", "b"]]}', "'name' must be a string"),
        ("a.json", '"just text"', "expected a list of pairs"),
        ("a.txt", "[]", "must end in .json or .toml"),
    ],
)
def test_malformed_concept_files_are_one_line_errors(tmp_path, file, content, expected):
    path = tmp_path / file
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_concept(str(path))
    message = str(info.value)
    assert expected in message and message == one_line(message) and str(path) in message


def test_non_utf8_and_missing_concept_files(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes(b'[["caf\xe9", "tea"]]')
    with pytest.raises(DataError, match="not UTF-8"):
        load_concept(str(path))
    with pytest.raises(DataError, match="does not exist"):
        load_concept(str(tmp_path / "absent.toml"))
    with pytest.raises(DataError, match="unknown concept 'nudityy'"):
        load_concept("nudityy")


def test_concepts_command_lists_sd_world(cli, shared_data):
    code, out, err = cli("concepts", "--json", "--data-dir", str(shared_data))
    assert code == 0, err
    records = {r["name"]: r for r in json.loads(out)}
    assert set(records) == {"nudity", "unsafe"}
    assert len(records["nudity"]["pairs"]) == 50 and records["nudity"]["detector"] == "nudenet"
    code, out, _ = cli("concepts", "--data-dir", str(shared_data))
    assert code == 0 and "nudity" in out and "(+47)" in out


def test_concepts_command_for_a_tiny_sd_folder_is_the_sd_world(cli, tiny_sd_dir, shared_data):
    code, out, err = cli("concepts", "--model", str(tiny_sd_dir), "--json", "--data-dir", str(shared_data))
    assert code == 0, err
    assert {r["name"] for r in json.loads(out)} == {"nudity", "unsafe"}


def test_concepts_without_local_pairs_say_how_to_fetch(cli, tmp_path):
    code, out, _ = cli("concepts", "--json", "--data-dir", str(tmp_path))
    records = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and records["nudity"]["pairs"] is None and "data fetch nudity" in records["nudity"]["error"]
