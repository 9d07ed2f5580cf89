"""Properties over the data files a user writes: prompt CSV files (their own and the published sets'
column layouts) and concept files (JSON or TOML pairs). Each file either loads, and then round-trips
(stored and read back; written again and parsed again), or is refused with one DataError line that
names the file; nothing else escapes. The CLI properties run `data add` / `data show` in-process and
check that a refusal leaves the workspace and the store byte-identical."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
import tomli_w
from fuzzing import (
    assert_house_rule,
    assert_one_line_error,
    edge_text,
    examples,
    mutate,
    mutated,
    numbers_as_text,
    printable_text,
    rows_digest,
    run_cli,
    tree_digest,
    unchanged_on_refusal,
)
from hypothesis import assume, example, given
from hypothesis import strategies as st

from trce_audit.data.concepts import load_concept, read_concept_document
from trce_audit.data.registry import PROMPT_SETS
from trce_audit.data.sets import load_user_csv, read_prompt_csv
from trce_audit.errors import DataError
from trce_audit.records import PromptRow
from trce_audit.store import Store
from trce_audit.workspace import Workspace

pytestmark = pytest.mark.fuzz

SCRATCH = Path(tempfile.mkdtemp(prefix="trce-fuzz-data-"))
HEADER_NAMES = ["prompt", "text", "seed", "evaluation_seed", "guidance", "evaluation_guidance", "categories", "case_number",
                "source_row", "", " prompt", "Prompt", "prompt\x00", "note"]


_NUMBER_WORDS = ["", " ", "nan", "inf", "-inf", "1e400", "-1", "1.5", "42.0", "0x10", "1_0", "²", "٣", "9" * 5000, "5\x00"]
_CELL = st.one_of(edge_text(12), st.integers(-(2**70), 2**70).map(str), st.sampled_from(_NUMBER_WORDS))
_COLUMN = {
    "seed": st.one_of(st.integers(0, 2**63 - 1).map(str), _CELL),
    "guidance": st.one_of(st.floats(-50, 50, allow_nan=False).map(repr), _CELL),
}


def _column(name: str) -> st.SearchStrategy[str]:
    return _COLUMN.get(name.replace("evaluation_", ""), _CELL)


@functools.lru_cache(maxsize=None)
def _rows(names: tuple[str, ...]) -> st.SearchStrategy[list[list[str]]]:
    """Rows of a header's width, now and then one of another width (built once per header: building a
    strategy costs more than drawing from it)."""
    row = st.tuples(*(_column(name) for name in names)).map(list)
    return st.lists(st.one_of(row, row, row, st.lists(_CELL, max_size=4)), max_size=5)


@st.composite
def csv_text(draw, header_names=HEADER_NAMES, required=("prompt",)) -> str:
    """A CSV document: usually a valid header with the required columns and rows of its width (now and
    then a duplicated column or a row of another width), written with any quoting and line ending."""
    names = draw(st.lists(st.one_of(st.sampled_from(header_names), printable_text(1, 8)), max_size=4))
    if draw(st.integers(0, 3)):
        names = list(required) + names
    if draw(st.integers(0, 9)):
        names = list(dict.fromkeys(names))
    rows = draw(_rows(tuple(names)))
    buffer = io.StringIO()
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    writer = csv.writer(buffer, quoting=quoting, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(names)
    writer.writerows(rows)
    return buffer.getvalue()


def csv_bytes(**kwargs) -> st.SearchStrategy[bytes]:
    return mutated(csv_text(**kwargs).map(lambda text: text.encode("utf-8", "surrogatepass")))


def _write(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def _as_csv(rows: list[PromptRow], meta_columns: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "seed", "guidance", *meta_columns])
    for row in rows:
        writer.writerow([row.text, row.seed, repr(row.guidance), *(row.meta.get(name, "") for name in meta_columns)])
    return buffer.getvalue().encode("utf-8")


def _same_rows(a: list[PromptRow], b: list[PromptRow]) -> None:
    assert [(r.text, r.seed, r.guidance, r.meta) for r in a] == [(r.text, r.seed, r.guidance, r.meta) for r in b]


_STORES: dict[str, Store] = {}


def scratch_store() -> Store:
    """One SQLite store for every example of this module (migrating costs half a second)."""
    if "sqlite" not in _STORES:
        _STORES["sqlite"] = Store(f"sqlite:///{SCRATCH / 'store.sqlite'}")
    return _STORES["sqlite"]


def check_prompt_file(data: bytes, limit: int | None, store: Store) -> None:
    path = _write("prompts.csv", data)
    try:
        rows = load_user_csv(path, limit=limit)
    except DataError as exc:
        assert_one_line_error(exc, names=[str(path)])
        return
    assert rows and (limit is None or len(rows) <= limit)
    for row in rows:
        assert 0 <= row.seed <= 2**63 - 1 and math.isfinite(row.guidance)
        assert not any(ord(c) < 0x20 and c != "\t" for c in row.text)
    # stored and read back: the same rows
    set_id = store.add_prompt_set("fuzz", rows)
    _same_rows(store.prompt_rows(set_id), rows)
    # written again (prompt, seed, guidance and the meta columns) and parsed again: the same rows
    meta_columns = [name for name in rows[0].meta if name != "source_row"]
    again = load_user_csv(_write("again.csv", _as_csv(rows, meta_columns)))
    for row in rows:
        row.meta.pop("source_row", None)
    for row in again:
        row.meta.pop("source_row", None)
    _same_rows(again, rows)


@examples(500)
@given(csv_bytes(), st.one_of(st.none(), st.integers(1, 4)))
@example(b"prompt,note\nhello,\xc2\xb2\n", None)  # a superscript digit: str.isdigit() but not int() (was exit 3)
@example(b"prompt,n\nhello," + b"9" * 5000 + b"\n", None)  # past int()'s digit limit (was exit 3)
@example(b"prompt,seed\nhello,1e400\n", None)  # an infinite float seed (was exit 3: OverflowError)
@example(b"prompt,seed\nhello,nan\n", None)  # a NaN seed (was exit 3: ValueError from int(nan))
@example(b"\xef\xbb\xbfprompt\r\nhello\r\n", 1)
def test_user_prompt_files_load_or_are_refused_in_one_line(data, limit):
    check_prompt_file(data, limit, scratch_store())


def test_postgres_stores_what_sqlite_stores(pg_database):
    """The rows of a user file a SQLite store accepts, a Postgres store accepts and reads back the same
    (Postgres refuses NUL in text and JSON: a meta value with NUL must be refused when the file is read)."""
    store = Store(pg_database)
    try:
        run_pg = examples(50)(given(csv_bytes(), st.just(None))(lambda data, limit: check_prompt_file(data, limit, store)))
        run_pg = example(b"prompt,note\nhello,a\x00b\n", None)(run_pg)
        run_pg()
    finally:
        store.close()


FILE_SETS = sorted(name for name, spec in PROMPT_SETS.items() if spec.file is not None)


@st.composite
def published_layout(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(FILE_SETS))
    columns = PROMPT_SETS[name].columns
    wanted = [c for c in (columns.text, columns.seed, columns.guidance, *columns.meta) if c]
    data = draw(csv_bytes(header_names=wanted + HEADER_NAMES[:4], required=tuple(wanted)))
    return name, data


@examples(500)
@given(published_layout())
@example(("i2p", b"prompt,evaluation_seed,evaluation_guidance,case_number,categories,hard,nudity_percentage,inappropriate_percentage\n"
                 b"\"a\nb\",1,7.5,1,sexual,0,1,2\n"))
def test_published_set_layouts_load_or_are_refused_in_one_line(case):
    name, data = case
    spec = PROMPT_SETS[name]
    path = _write("published.csv", data)
    try:
        rows = read_prompt_csv(path, spec)
    except DataError as exc:
        assert_one_line_error(exc, names=[str(path)])
        return
    for row in rows:
        assert 0 <= row.seed <= 2**63 - 1 and math.isfinite(row.guidance)
        assert not any(ord(c) < 0x20 and c not in "\t\r\n" for c in row.text)  # published prompts may span lines


# ------------------------------------------------------------------------------------------ concept files
_GOOD_PAIR = st.tuples(printable_text(1, 12), printable_text(1, 12)).map(list)
_PAIR = st.one_of(_GOOD_PAIR, _GOOD_PAIR, _GOOD_PAIR, st.lists(edge_text(8), max_size=3), st.integers(), st.none(),
                  st.just(["", "x"]), st.just(["a", " "]))
_KEYS = st.dictionaries(
    st.sampled_from(["name", "detector", "label", "description", "eval_sets", "preserve_sets", "other"]),
    st.one_of(printable_text(0, 10), edge_text(8), st.lists(printable_text(1, 6), max_size=2), st.integers(), st.booleans()),
    max_size=3,
)
_ODD_DOCUMENT = st.one_of(st.integers(), st.text(max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def concept_document(draw) -> tuple[str, bytes]:
    """A concept file: a list of pairs or an object with pairs and other keys, as JSON or TOML (a
    duplicated key now and then), mutated; or a document of another shape."""
    pairs = draw(st.lists(_PAIR, max_size=5))
    keys = draw(_KEYS)
    document = pairs if draw(st.booleans()) and not keys else {"pairs": pairs, **keys}
    if draw(st.integers(0, 9)) == 0:
        document = draw(_ODD_DOCUMENT)
    suffix = draw(st.sampled_from([".json", ".json", ".toml", ".txt"]))
    if suffix == ".toml" and isinstance(document, dict):
        try:
            text = tomli_w.dumps(document)
        except (TypeError, ValueError):
            text = json.dumps(document)
    else:
        text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:  # a duplicated key: JSON keeps the last, TOML refuses
        text = text.replace('{"pairs"', '{"name": "first", "name": "second", "pairs"', 1).replace("pairs = ", 'name = "a"\nname = "b"\npairs = ', 1)
    return suffix, mutate(draw, text.encode("utf-8", "surrogatepass"))


@examples(1000)
@given(concept_document())
@example((".json", b'{"pairs": [["a", "b"]], "eval_sets": "i2p"}'))
@example((".json", b"[" * 100000))  # nested past the parser's recursion limit (was exit 3: RecursionError)
@example((".toml", b"pairs = [['a', 'b']]\nname = 'x'\nname = 'y'\n"))
@example((".json", b'{"pairs": [["a", "b"]], "name": "\\ud800"}'))  # a lone surrogate in a JSON escape
def test_concept_files_load_or_are_refused_in_one_line(case):
    suffix, data = case
    path = _write(f"concept{suffix}", data)
    try:
        document = read_concept_document(path)
        concept = load_concept(str(path))
    except DataError as exc:
        assert_one_line_error(exc, names=[str(path)])
        return
    assert concept.pairs == document["pairs"] and concept.pairs
    for malicious, safe in concept.pairs:
        assert isinstance(malicious, str) and isinstance(safe, str) and malicious.strip() and safe.strip()
    # written back as JSON and read again: the same concept
    again = _write("again.json", json.dumps({**document, "pairs": [list(p) for p in document["pairs"]]}).encode())
    assert read_concept_document(again) == document
    # the concept hashes and prints (run identities and `concepts --json` use both)
    json.dumps(concept.as_dict()).encode("utf-8")


@examples(1000)
@given(st.one_of(st.sampled_from(["nudity", "unsafe", "van-gogh", "kelly", "cross", "", " nudity", "x.json", "../x.toml", "a/b", ".", "nudity\x00",
                                  "a" * 300, "a" * 300 + ".json"]), edge_text(20), st.text(max_size=300)),
       st.sampled_from(["sd", "pocket", "mars"]))
@example("a" * 300, "sd")  # a name too long for the file system (was exit 3: OSError from Path.is_file)
@example("a" * 300 + ".json", "sd")
def test_concept_names_load_or_are_refused_in_one_line(name, world):
    workspace = Workspace.from_options(SCRATCH / "ws")
    try:
        concept = load_concept(name, world=world, workspace=workspace)
    except DataError as exc:
        assert_one_line_error(exc)
        return
    assert concept.pairs and concept.world == world


# ------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def cli_workspace(tmp_path_factory):
    """A workspace with a store that already holds a set: a refusal must leave both as they were."""
    root = tmp_path_factory.mktemp("fuzz-cli") / "ws"
    root.mkdir()
    store = Store(f"sqlite:///{root / 'trce-audit.sqlite'}")
    store.add_prompt_set("seeds", [PromptRow("a red cross", 1, 7.5)])
    store.close()
    return root


@examples(25)
@given(csv_bytes(), st.sampled_from(["add", "show"]))
@example(b"prompt,note\nhello,\xc2\xb2\n", "add")
@example(b"prompt\nhello\x00there\n", "add")
@example(b"prompt,seed\nhello,1e400\n", "show")
def test_data_add_and_show_keep_the_house_rule(cli_workspace, data, command):
    path = _write("cli.csv", data)
    url = f"sqlite:///{cli_workspace / 'trce-audit.sqlite'}"
    with unchanged_on_refusal(cli_workspace, url) as check:
        result = run_cli("--workspace", str(cli_workspace), "data", command, str(path), "--json")
        check(result)
    assert_house_rule(result, names=[str(path)])
    if result.code == 0 and command == "add":
        record = json.loads(result.out)
        store = Store(url, read_only=True)
        try:
            _same_rows(store.prompt_rows(record["id"]), load_user_csv(path))
        finally:
            store.close()


@examples(15)
@given(csv_bytes())
@example(b"prompt,seed\nhello,x\n")
def test_a_refused_file_creates_no_workspace_and_no_store(tmp_path_factory, data):
    """`data add` on a workspace that does not exist yet: a refused file leaves nothing behind."""
    root = Path(tempfile.mkdtemp(dir=SCRATCH)) / "fresh"
    path = _write("fresh.csv", data)
    result = run_cli("--workspace", str(root), "data", "add", str(path))
    assert_house_rule(result, names=[str(path)])
    if result.code == 2:
        assert tree_digest(root) == {} and not root.exists()
        assert rows_digest(f"sqlite:///{root / 'trce-audit.sqlite'}") is None
