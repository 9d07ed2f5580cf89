"""The product card's commands as written: default models, --device auto, a read-only gate, doctor, stable api names."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub and an empty Hugging Face cache."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


def test_erase_without_model_names_the_reference_model_and_the_way_out(cli, workspace, offline):
    import shutil

    shutil.rmtree(workspace.root)
    code, out, err = cli("erase", "trce", "--concept", "nudity")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "CompVis/stable-diffusion-v1-4" in err and "--model pocket" in err and "HF_HUB_OFFLINE" in err
    assert not workspace.root.exists()  # nothing was created for a command that could not start


def test_reference_models_by_concept():
    from trce_audit.models.defaults import reference_model

    assert reference_model("nudity") == reference_model("unsafe") == "CompVis/stable-diffusion-v1-4"
    assert reference_model("cross") == "pocket"


def _fake_artefact(store, folder, concept: str, world: str = "pocket") -> int:
    """An artefact row whose folder looks like a pipeline (the default-model choice reads no weights)."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    run = store.start_run(kind="erase", component="trce", config={"concept": concept, "folder": str(folder)})
    return store.add_artefact(path=str(folder), sha256=folder.name * 8, run_id=run.id, parent_model="pocket",
                              parent_fingerprint="f" * 64,
                              meta={"eraser": "trce", "concept": concept, "world": world, "description": f"trce erased {concept!r} from pocket"})


def test_attack_and_eval_without_model_use_the_latest_artefact_for_the_concept(cli, store, monkeypatch, offline, tmp_path):
    import trce_audit.api as api

    calls = []

    def fake(command):
        def record(store, workspace, **kwargs):
            calls.append((command, kwargs["model"], kwargs.get("concept")))
            return {"run_id": 1, "metrics": [], "generation_run_id": 1, "n_images": 0, "warnings": []}

        return record

    monkeypatch.setattr(api, "attack", fake("attack"))  # the CLI looks each name up on the facade when it runs
    monkeypatch.setattr(api, "evaluate", fake("eval"))
    older = _fake_artefact(store, tmp_path / "a1", "cross")
    newer = _fake_artefact(store, tmp_path / "a2", "cross")
    _fake_artefact(store, tmp_path / "a3", "other")
    code, _, err = cli("attack", "ring-a-bell", "--concept", "cross", "--json")
    assert code == 0, err
    assert calls[-1] == ("attack", f"artefact:{newer}", "cross") and older < newer
    assert f"model: artefact:{newer}" in err and "--model" in err
    code, _, err = cli("eval", "-c", "cross", "-p", "pocket-explicit", "--metric", "pocket", "--json")
    assert code == 0 and calls[-1] == ("eval", f"artefact:{newer}", "cross"), err


def test_attack_without_model_or_artefact_falls_back_to_the_reference_model(cli, monkeypatch, offline):
    code, _, err = cli("attack", "ring-a-bell", "--concept", "nudity")
    assert code == 2 and err.count("\n") == 1 and "CompVis/stable-diffusion-v1-4" in err


def test_device_auto_is_the_default_and_resolves(monkeypatch):
    import torch

    from trce_audit.errors import ConfigError
    from trce_audit.generation import GenerationSettings
    from trce_audit.models.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert GenerationSettings().device == "auto"
    assert GenerationSettings().validate().runtime()["device"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_gate_on_an_empty_workspace_exits_2_and_writes_nothing(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    result = subprocess.run([sys.executable, "-m", "trce_audit.cli", "gate"], cwd=folder, capture_output=True, text=True,
                            env={**os.environ, "TRCE_AUDIT_HOME": "", "TRCE_AUDIT_DB": ""})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "never creates" in result.stderr and "--runs" not in result.stderr
    assert list(folder.iterdir()) == []


def test_gate_on_a_store_without_audits_names_no_missing_option(cli, store):
    code, _, err = cli("gate", "--max-asr", "*=5%")
    assert code == 2 and "no audit run" in err and "--runs" not in err


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_doctor_offline_exits_0_and_lists_what_is_missing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trce_audit.cli", "--db", "postgresql://auditor:s3cret@127.0.0.1:9/results", "doctor"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok") and "hub" in line and "offline" in line for line in lines)
    assert any(line.startswith("MISS") and "CompVis/stable-diffusion-v1-4" in line and "->" in line for line in lines)
    assert any(line.startswith("ok") and "device" in line for line in lines)
    assert "s3cret" not in result.stdout + result.stderr and "***" in result.stdout
    assert list(tmp_path.iterdir()) == [tmp_path / "hf"] or list(tmp_path.iterdir()) == []


def test_doctor_imports_torch_only_for_the_device_check():
    result = _python(
        """
        import sys
        from trce_audit.api import installation as d
        from trce_audit.workspace import Workspace
        d.package_checks(); d.hub_check(); d.model_checks(); d.extra_checks(); d.store_check(Workspace.from_options("/nonexistent/ws"))
        print("TORCH_BEFORE=" + str("torch" in sys.modules))
        d.device_check()
        print("TORCH_AFTER=" + str("torch" in sys.modules))
        """,
        HF_HUB_OFFLINE="1",
    )
    assert "TORCH_BEFORE=False" in result.stdout and "TORCH_AFTER=True" in result.stdout, result.stderr


def test_plain_progress_prints_counts_elapsed_and_a_heartbeat():
    import time

    from trce_audit.cli.feedback import StageProgress

    class Log(io.StringIO):
        def isatty(self):
            return False

    log = Log()
    with StageProgress(log, interval=0.2) as report:
        report("generate", 0, 4)
        time.sleep(0.6)  # a long step with no callback: the heartbeat speaks
        report("generate", 4, 4)
    lines = log.getvalue().splitlines()
    assert lines[0] == "generate: 0/4 started"
    assert any(line.startswith("generate: 0/4 (0%), ") and "in this step" in line for line in lines[1:-1])
    assert lines[-1].startswith("generate: 4/4 done in ")


def test_warnings_print_once_as_one_line(cli, monkeypatch):
    import warnings

    from trce_audit.cli.feedback import WarningLines

    handler = WarningLines(io.StringIO())
    monkeypatch.setattr(warnings, "showwarning", handler)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = handler
        for _ in range(2):
            warnings.warn("budget below the paper's\n(3000 generations)", UserWarning)
    assert handler.stream.getvalue() == "warning: budget below the paper's (3000 generations)\n"


def test_audit_steps_are_numbered_with_elapsed_time_and_a_heartbeat():
    import time

    from trce_audit.cli.feedback import PlainProgress

    log = io.StringIO()
    steps = PlainProgress(log, interval=0.2)
    try:
        steps.step("erase: trce (trce) on pocket")
        time.sleep(0.6)
        steps.step("eval: base on pocket-explicit (pocket)")
    finally:
        steps.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("[1] erase: trce (trce) on pocket (") and lines[-1].startswith("[2] eval: base")
    assert any(line.startswith("[1] still on erase: trce") and "in this step" in line for line in lines[1:-1])


def test_plain_progress_says_how_far_and_how_long_is_left():
    from trce_audit.cli.feedback import PlainProgress

    now = [0.0]
    log = io.StringIO()
    steps = PlainProgress(log, interval=1000.0, clock=lambda: now[0])  # no heartbeat: only the callbacks speak
    try:
        steps.step("erase: esd-x (esd-x) on pocket")
        steps("erase esd-x: iterations", 0, 300)
        now[0] = 1000.0  # a line is due once the interval has passed
        steps("erase esd-x: iterations", 100, 300)
        steps.step("eval: base on pocket-explicit (pocket)")  # counted stages do not shift the step numbers
    finally:
        steps.close()
    lines = log.getvalue().splitlines()
    assert lines[1] == "erase esd-x: iterations: 0/300 started"
    assert lines[2] == "erase esd-x: iterations: 100/300 (33%), 16.7 min in this step, about 33.3 min left"
    assert lines[3].startswith("[2] eval: base on pocket-explicit")
