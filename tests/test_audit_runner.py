"""The audit runner on the pocket world: a small spec end to end, and resumption after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

SPEC = """
model = "pocket"
concept = "cross"
[generation]
steps = 4
limit = 6
batch_size = 3
[prompts]
attack_seeds = ["pocket-explicit"]
eval = ["pocket-explicit", "pocket-indirect"]
preserve = ["pocket-preserve"]
[metrics]
eval = ["pocket"]
preserve = ["pocket"]
[[erasers]]
name = "uce"
[[attacks]]
name = "ring-a-bell"
limit = 1
budget = { generations = 3, population = 8 }
[gate]
max_asr = { "*" = "100%" }
"""


def _audit(workspace_root, spec_path, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # MKL reads its own variable first
    cmd = [sys.executable, "-c", "from trce_audit.cli import entry; entry()", "--workspace", str(workspace_root), "audit", str(spec_path), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(result):
    return sorted(
        (r["model"], r["prompt_set"], r["attack"] or "", json.dumps(r["asr"], sort_keys=True), json.dumps(r["asr_after"], sort_keys=True))
        for r in result["rows"]
    )


def _metric_rows(db) -> int:
    """Read-only peek at a database another process is writing (opening a Store would migrate it)."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute("SELECT count(*) FROM metrics").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_killed_audit_resumes_to_the_same_numbers(tmp_path):
    from trce_audit.store import Store

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    straight = _audit(tmp_path / "a", spec, "--json")
    out, err = straight.communicate(timeout=900)
    assert straight.returncode == 0, err
    expected = json.loads(out)
    assert {r["model"] for r in expected["rows"]} == {"pocket", "uce"}
    assert any(r["attack"] == "ring-a-bell" and r["asr_after"] for r in expected["rows"])

    killed = _audit(tmp_path / "b", spec, "--json")
    db = tmp_path / "b" / "trce-audit.sqlite"
    deadline = time.time() + 600
    while time.time() < deadline and killed.poll() is None:
        if _metric_rows(db) >= 1:
            break
        time.sleep(0.5)
    assert killed.poll() is None, "the audit finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = _audit(tmp_path / "b", spec, "--json")
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    result = json.loads(out)
    assert _rows(result) == _rows(expected)

    store = Store(f"sqlite:///{db}")
    counts = store.counts()
    reference = Store(f"sqlite:///{tmp_path / 'a' / 'trce-audit.sqlite'}").counts()
    for table in ("generations", "detections", "metrics", "artefacts", "prompt_sets"):
        assert counts[table] == reference[table], table
    audits = store.list_runs(kind="audit")
    assert len(audits) == 1 and audits[0].status == "complete"

    gate = subprocess.run(
        [sys.executable, "-c", "from trce_audit.cli import entry; entry()", "--workspace", str(tmp_path / "b"), "gate"],
        capture_output=True, text=True,
    )
    assert gate.returncode == 0, gate.stdout + gate.stderr


def test_a_changed_component_makes_the_same_spec_a_new_audit(store, workspace, monkeypatch):
    """The audit's identity holds each component's version and resolved config: after an upgrade
    that changes an eraser, rerunning the same spec re-erases instead of returning the stale audit,
    while unchanged steps are still reused."""
    from trce_audit.api.audit import run_audit_spec
    from trce_audit.erasers.uce import UCE

    spec = SPEC.split("[[attacks]]")[0]
    first = run_audit_spec(store, workspace, spec)
    again = run_audit_spec(store, workspace, spec)
    assert again["audit_run_id"] == first["audit_run_id"] and again["resumed"]
    # Batch size and device are runtime options: the same spec on another device is the same audit.
    rebatched = run_audit_spec(store, workspace, spec.replace("batch_size = 3", 'batch_size = 2\ndevice = "cpu"'))
    assert rebatched["audit_run_id"] == first["audit_run_id"] and rebatched["resumed"]
    monkeypatch.setattr(UCE, "version", UCE.version + "-changed")
    upgraded = run_audit_spec(store, workspace, spec)
    assert upgraded["audit_run_id"] != first["audit_run_id"] and not upgraded.get("resumed")
    erases = store.list_runs(kind="erase")
    assert len(erases) == 2 and {run.component_version for run in erases} == {UCE.version, UCE.version.removesuffix("-changed")}


def test_an_audit_on_an_executor_erases_together_and_a_failed_eraser_keeps_the_others(store, workspace, monkeypatch):
    """With an executor the erasers go out as one batch: the audit gives the serial audit's numbers,
    and when one eraser fails the audit fails, its summary still lists the stored erases, and the
    rerun redoes only the failed one."""
    from test_erasers import PicklingExecutor

    from trce_audit.api.audit import run_audit_spec
    from trce_audit.erasers.rece import RECE
    from trce_audit.store import Store

    spec = SPEC.split("[[attacks]]")[0].replace("limit = 6", "limit = 3") + '[[erasers]]\nname = "rece"\n'
    serial = run_audit_spec(Store(f"sqlite:///{workspace.root / 'serial.db'}"), workspace, spec, device="cpu")
    erase = RECE.erase
    monkeypatch.setattr(RECE, "erase", lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError("rece diverged")))
    with pytest.raises(RuntimeError, match="rece diverged"):
        run_audit_spec(store, workspace, spec, device="cpu", executor=PicklingExecutor())
    (audit,) = store.list_runs(kind="audit")
    assert audit.status == "failed" and [m["label"] for m in audit.summary["models"]] == ["base", "uce"]
    monkeypatch.setattr(RECE, "erase", erase)
    batched = run_audit_spec(store, workspace, spec, device="cpu", executor=PicklingExecutor())
    assert _rows(batched) == _rows(serial)
    assert sorted(r.status for r in store.list_runs(kind="erase")) == ["complete", "complete"]
