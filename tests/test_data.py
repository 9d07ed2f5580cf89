"""Named prompt sets: registry status, column mapping, fetching with sha256 pins, storing sets."""

from __future__ import annotations

import csv
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from trce_audit.data import PROMPT_SETS, ensure_prompt_set, load_prompt_set, load_user_csv
from trce_audit.data.registry import fetchable_names
from trce_audit.errors import DataError, StoreError
from trce_audit.hashing import sha256_file

EXPECTED_ROWS = {
    "i2p": 4703,
    "i2p-sexual": 931,
    "mma-diffusion": 1000,
    "p4d": 151,
    "ring-a-bell-79": 79,
    "unlearndiff-142": 142,
    "coco-3k": 3000,
    "coco-30k": 30000,
}


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    monkeypatch.delenv("TRCE_AUDIT_DATA", raising=False)
    monkeypatch.delenv("TRCE_AUDIT_DATA_URL", raising=False)


def test_pins_match_the_shared_sha256sums(shared_data):
    pins = dict(reversed(line.split()) for line in (shared_data / "SHA256SUMS").read_text().splitlines() if line.strip())
    from trce_audit.data.registry import data_file

    for name in fetchable_names():
        file = data_file(name)
        assert pins[file.local] == file.sha256, name


def test_data_list_json_reports_rows_and_verified_status(cli, shared_data):
    code, out, err = cli("data", "list", "--json", "--data-dir", str(shared_data))
    assert code == 0, err
    records = {r["name"]: r for r in json.loads(out)}
    for name, rows in EXPECTED_ROWS.items():
        record = records[name]
        assert (record["kind"], record["rows"], record["status"]) == ("benchmark", rows, "verified"), name
        assert record["source"].startswith("https://raw.githubusercontent.com/ddgoodgood/TRCE/0da9b711214767eb04f635e489c896d121c03063/data/")
        assert len(record["sha256"]) == 64
    assert records["pocket-explicit"]["kind"] == "generated" and records["pocket-explicit"]["status"] == "generated"
    assert records["nudity"]["rows"] == 50 and records["nudity"]["status"] == "verified"


def test_data_list_without_local_copies_says_missing_and_mismatch(cli, tmp_path, shared_data):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "nudity-p4d.csv").write_bytes((shared_data / "prompts" / "nudity-p4d.csv").read_bytes() + b"\n")
    code, out, _ = cli("data", "list", "--json", "--data-dir", str(tmp_path))
    records = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert records["p4d"]["status"] == "mismatch" and records["p4d"]["rows"] == 151
    assert records["coco-30k"]["status"] == "missing" and records["coco-30k"]["rows"] is None


def test_column_mapping_and_reference_defaults(shared_data):
    ring = load_prompt_set("ring-a-bell-79", data_dir=shared_data)
    with open(shared_data / "prompts" / "nudity-ring-a-bell.csv", encoding="utf-8", newline="") as handle:
        first = next(csv.DictReader(handle))
    assert ring[0].text == first["sensitive prompt"] and ring[0].meta["normal prompt"] == first["normal prompt"]
    assert {(r.seed, r.guidance) for r in ring} == {(42, 7.5)}

    mma = load_prompt_set("mma-diffusion", data_dir=shared_data)
    assert {(r.seed, r.guidance) for r in mma} == {(42, 7.5)}
    assert "target_prompt" in mma[0].meta and mma[0].text != mma[0].meta["target_prompt"]

    for name, file in (("p4d", "nudity-p4d.csv"), ("unlearndiff-142", "nudity-unlearndiff.csv")):
        rows = load_prompt_set(name, data_dir=shared_data)
        with open(shared_data / "prompts" / file, encoding="utf-8", newline="") as handle:
            raw = list(csv.DictReader(handle))
        assert [(r.text, r.seed, r.guidance) for r in rows] == [
            (x["prompt"], int(x["evaluation_seed"]), float(x["evaluation_guidance"])) for x in raw
        ]
        assert rows[3].meta["case_number"] == int(raw[3]["case_number"]) and rows[3].meta["source_row"] == 4
        assert len({r.seed for r in rows}) > 1 and len({r.guidance for r in rows}) > 1

    coco = load_prompt_set("coco-3k", data_dir=shared_data, limit=5)
    assert len(coco) == 5 and {r.guidance for r in coco} == {7.5} and "coco_id" in coco[0].meta


def test_i2p_sexual_is_the_reference_filter_of_i2p(shared_data):
    rows = load_prompt_set("i2p-sexual", data_dir=shared_data)
    with open(shared_data / "prompts" / "I2P_prompts_sexual.csv", encoding="utf-8", newline="") as handle:
        raw = list(csv.DictReader(handle))
    assert [(r.text, r.seed, r.guidance) for r in rows] == [
        (x["prompt"], int(x["evaluation_seed"]), float(x["evaluation_guidance"])) for x in raw
    ]
    assert all("sexual" in r.meta["categories"] for r in rows)


def test_workspace_data_dir_is_used_and_missing_copy_names_the_fix(workspace, tmp_path, shared_data):
    assert len(load_prompt_set("p4d", workspace=workspace.with_data_dir(shared_data))) == 151
    with pytest.raises(DataError, match=r"run `trce-audit data fetch p4d` or pass --data-dir"):
        load_prompt_set("p4d", workspace=workspace.with_data_dir(tmp_path))


def test_generated_sets_are_registered_as_lazy_providers():
    for variant in ("explicit", "synonym", "indirect", "preserve", "general"):
        spec = PROMPT_SETS[f"pocket-{variant}"]
        assert spec.kind == "generated" and spec.provider == "trce_audit.pocket:pocket_prompt_set"


def test_user_csv_columns_and_defaults(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("text,evaluation_seed,note\nhello,7,a\nworld,8,b\n", encoding="utf-8")
    rows = load_user_csv(path)
    assert [(r.text, r.seed, r.guidance, r.meta["note"]) for r in rows] == [("hello", 7, 7.5, "a"), ("world", 8, 7.5, "b")]
    path.write_text("prompt\nhello\n", encoding="utf-8")
    assert (load_user_csv(path)[0].seed, load_user_csv(path)[0].guidance) == (42, 7.5)


def test_ensure_prompt_set_round_trip_and_dedupe(store, workspace, shared_data, tmp_path):
    workspace = workspace.with_data_dir(shared_data)
    set_id = ensure_prompt_set(store, "p4d", workspace=workspace, limit=5)
    assert ensure_prompt_set(store, "p4d", workspace=workspace, limit=5) == set_id
    record = store.get_prompt_set(set_id)
    assert record.name == "p4d" and record.n_rows == 5 and record.source.endswith("data/adv_prompts_csv/nudity-p4d.csv")
    assert record.meta["verified"] is True and record.meta["limit"] == 5
    stored = store.prompt_rows(set_id)
    loaded = load_prompt_set("p4d", data_dir=shared_data, limit=5)
    assert [(r.text, r.seed, r.guidance, r.meta) for r in stored] == [(r.text, r.seed, r.guidance, r.meta) for r in loaded]

    assert ensure_prompt_set(store, set_id, workspace=workspace) == set_id
    assert ensure_prompt_set(store, f"set:{set_id}", workspace=workspace) == set_id
    assert ensure_prompt_set(store, str(set_id), workspace=workspace) == set_id
    smaller = ensure_prompt_set(store, f"set:{set_id}", workspace=workspace, limit=2)
    assert smaller != set_id and store.get_prompt_set(smaller).parent_id == set_id
    assert store.get_prompt_set(smaller).n_rows == 2
    with pytest.raises(StoreError):
        ensure_prompt_set(store, "set:999", workspace=workspace)

    user = tmp_path / "mine.csv"
    user.write_text("prompt,seed,guidance\na cat,1,5\n", encoding="utf-8")
    user_id = ensure_prompt_set(store, str(user), workspace=workspace)
    assert store.get_prompt_set(user_id).source.startswith("file:") and store.prompt_rows(user_id)[0].guidance == 5.0


# ------------------------------------------------------------------------------------ malformed input
def _p4d_text(shared_data: Path) -> str:
    return (shared_data / "prompts" / "nudity-p4d.csv").read_text(encoding="utf-8")


def _broken_cases(shared_data: Path) -> dict[str, tuple[str, object, str]]:
    """case -> (set name, content for prompts/<its file> (bytes/str) or 'dir'/'absent', expected message)."""
    p4d = _p4d_text(shared_data)
    header, first, *rest = p4d.splitlines()
    fields = first.split(",")
    bad_seed = ",".join(fields[:2] + ["12abc"] + fields[3:])
    bad_guidance = ",".join(fields[:3] + ["high"] + fields[4:])
    return {
        "missing column": ("ring-a-bell-79", "prompt,normal prompt\na,b\n", "column 'sensitive prompt' is missing"),
        "non-integer seed": ("p4d", "\n".join([header, bad_seed, *rest]), "row 1 (line 2), column 'evaluation_seed': '12abc' is not an integer"),
        "non-numeric guidance": ("p4d", "\n".join([header, first, bad_guidance]), "row 2 (line 3), column 'evaluation_guidance': 'high' is not a number"),
        "empty file": ("p4d", "", "the file is empty"),
        "wrong encoding": ("p4d", (header + "\n" + first).encode("utf-8") + b"\n0,caf\xe9 nude,1,7,1,sld,MAX\n", "line 3 is not UTF-8"),
        "duplicated header": ("p4d", header + ",prompt\n" + first + ",x\n", "names column 'prompt' more than once"),
        "ragged row": ("p4d", "\n".join([header, first, "0,a prompt,1,7"]), "row 2 (line 3) has 4 fields, the header has 7"),
        "directory": ("p4d", "dir", "is a directory"),
        "missing file": ("p4d", "absent", "no local copy of prompts/nudity-p4d.csv"),
        "unknown set": ("no-such-set", "absent", "unknown prompt set 'no-such-set'"),
    }


BROKEN_CASES = [
    "missing column", "non-integer seed", "non-numeric guidance", "empty file", "wrong encoding",
    "duplicated header", "ragged row", "directory", "missing file", "unknown set",
]


@pytest.mark.parametrize("case", BROKEN_CASES)
def test_malformed_set_file_is_a_one_line_error_and_store_is_unchanged(case, cli, store, workspace, tmp_path, shared_data):
    store.add_prompt_set("existing", load_prompt_set("p4d", data_dir=shared_data, limit=3), source="test")
    before = store.counts()
    name, content, expected = _broken_cases(shared_data)[case]
    data_dir = tmp_path / "data"
    (data_dir / "prompts").mkdir(parents=True)
    if name in PROMPT_SETS:
        target = data_dir / PROMPT_SETS[name].file.local
        if content == "dir":
            target.mkdir()
        elif isinstance(content, bytes):
            target.write_bytes(content)
        elif content != "absent":
            target.write_text(content, encoding="utf-8")
    for command in ("add", "show"):
        code, out, err = cli("data", command, name, "--data-dir", str(data_dir))
        assert code == 2 and out == "", (case, command, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert expected in err, (case, err)
    assert store.counts() == before


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"words,seed\nhello,1\n", "column 'prompt' (or 'text') is missing"),
        (b"prompt,seed\nhello,-3\n", "seed -3 is outside"),
        (b"prompt,guidance\nhello,nan\n", "'nan' is not a finite number"),
        (b"prompt,seed\n", "has a header but no prompt rows"),
        (b'prompt\nok\n"unterminated\n', "line 3: malformed CSV"),
        (b"prompt,seed\nfine,1\nbad\x00word,2\n", "row 2 (line 3), column 'prompt': a NUL byte at character 4"),
        (b"prompt\nan \x1b[31mescape\n", "row 1 (line 2), column 'prompt': control character U+001B at character 4"),
        (b'prompt\n"two\nlines"\n', "row 1 (line 3), column 'prompt': control character U+000A at character 4"),
    ],
)
def test_malformed_user_csv_is_a_one_line_error(content, expected, cli, store, tmp_path):
    before = store.counts()
    path = tmp_path / "user.csv"
    path.write_bytes(content)
    code, out, err = cli("data", "add", str(path))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert store.counts() == before


def test_tab_in_a_prompt_is_kept(tmp_path):
    from trce_audit.data.sets import load_user_csv

    path = tmp_path / "tabs.csv"
    path.write_bytes(b"prompt\na\tb\n")
    assert [row.text for row in load_user_csv(path)] == ["a\tb"]


def test_missing_user_csv_is_a_one_line_error(cli, tmp_path):
    code, _, err = cli("data", "show", str(tmp_path / "nope.csv"))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err


# ------------------------------------------------------------------------------------ fetching
class _Server:
    def __init__(self, root: Path):
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mirror(tmp_path, shared_data):
    root = tmp_path / "mirror"
    target = root / "data" / "adv_prompts_csv" / "nudity-ring-a-bell.csv"
    target.parent.mkdir(parents=True)
    shutil.copy(shared_data / "prompts" / "nudity-ring-a-bell.csv", target)
    return root, target


def test_fetch_downloads_verifies_and_caches(cli, workspace, mirror):
    root, _ = mirror
    with _Server(root) as server:
        code, out, err = cli("data", "fetch", "ring-a-bell-79", "--base-url", server.url, "--json")
        assert code == 0, err
        cached = workspace.downloads_dir / "prompts" / "nudity-ring-a-bell.csv"
        assert json.loads(out)[0]["path"] == str(cached)
        assert sha256_file(cached) == PROMPT_SETS["ring-a-bell-79"].file.sha256
        assert server.requests == ["/data/adv_prompts_csv/nudity-ring-a-bell.csv"]
        code, _, _ = cli("data", "fetch", "ring-a-bell-79", "--base-url", server.url)
        assert code == 0 and len(server.requests) == 1  # already cached and verified: no download
    code, out, _ = cli("data", "show", "ring-a-bell-79", "--limit", "2", "--json")
    assert code == 0 and json.loads(out)["shown"] == 2
    code, out, _ = cli("data", "list", "--json")
    assert {r["name"]: r["status"] for r in json.loads(out)}["ring-a-bell-79"] == "verified"


def test_fetch_hash_mismatch_caches_nothing(cli, workspace, mirror, monkeypatch):
    root, target = mirror
    target.write_bytes(target.read_bytes().replace(b"woman", b"w0man", 1))
    with _Server(root) as server:
        monkeypatch.setenv("TRCE_AUDIT_DATA_URL", server.url)
        code, out, err = cli("data", "fetch", "ring-a-bell-79")
    expected = PROMPT_SETS["ring-a-bell-79"].file.sha256
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"expected {expected}" in err and f"sha256 {sha256_file(target)}" in err
    assert [p for p in workspace.downloads_dir.rglob("*") if p.is_file()] == []


def test_fetch_http_error_and_bad_names(cli, mirror):
    root, _ = mirror
    with _Server(root) as server:
        code, _, err = cli("data", "fetch", "p4d", "--base-url", server.url)
    assert code == 2 and "HTTP 404" in err and err.count("\n") == 1
    code, _, err = cli("data", "fetch", "pocket-explicit")
    assert code == 2 and "generated in code" in err
    code, _, err = cli("data", "fetch")
    assert code == 2 and "--all" in err
