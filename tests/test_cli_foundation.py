"""CLI skeleton: fast help without torch, global options, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys


def test_help_imports_no_torch():
    code = (
        "import sys\n"
        "from trce_audit.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'onnxruntime', 'nudenet') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage" in out and "HEAVY=\n" in out


def test_runs_list_and_show_json(cli, store):
    run = store.start_run(kind="eval", component="pocket", config={"steps": 30})
    store.add_metric(run.id, "asr", 0.25, n=8)
    code, out, _ = cli("runs", "list", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [run.id]
    code, out, _ = cli("runs", "show", str(run.id), "--json")
    record = json.loads(out)
    assert code == 0 and record["metrics"][0]["value"] == 0.25 and record["config"] == {"steps": 30}


def test_unknown_run_is_one_line_error(cli, store):
    code, out, err = cli("runs", "show", "999")
    assert code == 2 and out == "" and err.strip().count("\n") == 0 and "run 999 does not exist" in err


def test_bad_db_url_is_one_line_error(cli):
    code, _, err = cli("--db", "nosuchdialect://x", "runs", "list")
    assert code == 2 and err.startswith("error:") and err.strip().count("\n") == 0


def test_db_option_picks_the_store(cli, store, tmp_path):
    from trce_audit.store import Store

    url = f"sqlite:///{tmp_path / 'other.sqlite'}"
    other = Store(url)
    run = other.start_run(kind="eval", component="pocket", config={"steps": 30})
    other.close()
    code, out, _ = cli("--db", url, "runs", "list", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [run.id]
    code, out, _ = cli("runs", "list", "--json")  # the workspace's own store holds none
    assert code == 0 and json.loads(out) == []
