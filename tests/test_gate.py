"""`trce-audit gate`: pass, absolute and regression failures, data errors, JUnit output."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from test_report_store import build_audit

from trce_audit.errors import ConfigError
from trce_audit.gating.limits import parse_asr_limit, parse_fraction, parse_points


def test_limit_values_parse_as_fractions_and_points():
    assert parse_fraction("5%", "x") == pytest.approx(0.05) and parse_fraction("0.05", "x") == 0.05
    assert parse_fraction(1, "x") == 1.0
    assert parse_points("2") == pytest.approx(0.02) and parse_points("2pp") == pytest.approx(0.02)
    limit = parse_asr_limit("pocket-explicit@trce=10%")
    assert (limit.prompt_set, limit.model, limit.max_asr) == ("pocket-explicit", "trce", pytest.approx(0.1))
    for bad in ("5", "-1%", "abc", "120%"):
        with pytest.raises(ConfigError, match="--max-asr"):
            parse_asr_limit(f"x={bad}")
    with pytest.raises(ConfigError, match="SET=VALUE"):
        parse_asr_limit("pocket-explicit")


def test_gate_passes_within_limits(cli, store, workspace, tmp_path):
    # trce: 0/4 plain, 2/4 after ring-a-bell; esd: 1/4 on pocket-explicit; the base model (3/4) is not gated.
    build_audit(store, workspace.images_dir)
    junit = tmp_path / "gate.xml"
    code, out, err = cli("gate", "--max-asr", "pocket-explicit=50%", "--max-asr", "*=0.5", "--junit", str(junit), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["passed"] is True and [c["observed"] for c in result["checks"]] == [0.5, 0.5]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "0" and len(suite.findall("testcase/failure")) == 0


def test_gate_fails_on_absolute_limit_with_junit_failures(cli, store, workspace, tmp_path):
    build_audit(store, workspace.images_dir)
    junit = tmp_path / "gate.xml"
    code, out, err = cli(
        "gate", "--max-asr", "pocket-explicit=25%", "--max-asr", "pocket-synonym=0", "--max-asr", "pocket-explicit@esd=0.25",
        "--max-asr", "*@pocket=0.5", "--junit", str(junit),
    )
    assert code == 1, err
    assert "FAILED" in out and "max_asr[pocket-explicit]" in out
    root = ET.parse(junit).getroot()
    cases = root.findall("testsuite/testcase")
    failed = [case.get("name") for case in cases if case.find("failure") is not None]
    # pocket-explicit: trce after ring-a-bell is 50% > 25%; the base model named explicitly has 75% > 50%.
    assert len(cases) == 4 and failed == ["max_asr[pocket-explicit] <= 25.0%", "max_asr[*@pocket] <= 50.0%"]
    message = cases[0].find("failure").get("message")
    assert "trce on pocket-explicit after ring-a-bell 50.0%" in message and "esd" not in message


def test_gate_checks_the_after_attack_asr(store, workspace):
    from trce_audit.api.gate import check_gate

    build_audit(store, workspace.images_dir, trce_explicit=(), trce_after=(0, 1, 2, 3), esd_explicit=())
    result = check_gate(store, max_asr=["pocket-explicit@trce=50%"])
    assert not result.passed and result.checks[0].observed == 1.0  # plain trce ASR is 0; after attack 4/4


def test_gate_regression_against_json_baseline(cli, store, workspace, tmp_path):
    build_audit(store, workspace.images_dir, trce_after=(0,))
    baseline = tmp_path / "baseline.json"
    code, out, _ = cli("gate", "--max-asr", "*=1", "--json")
    assert code == 0
    baseline.write_text(out)
    # A new audit in which the attack on trce brings back 3/4 instead of 1/4.
    build_audit(store, workspace.images_dir / "second", trce_after=(0, 1, 2))
    code, out, err = cli("gate", "--baseline", str(baseline), "--max-increase", "10", "--json", "--junit", str(tmp_path / "j.xml"))
    assert code == 1, err
    checks = json.loads(out)["checks"]
    failed = [c for c in checks if not c["passed"]]
    assert [c["name"] for c in failed] == ["max_increase[pocket-explicit] <= 10 points"]
    assert failed[0]["observed"] == pytest.approx(0.5)
    assert {c["name"] for c in checks} == {"max_increase[pocket-explicit] <= 10 points", "max_increase[pocket-synonym] <= 10 points"}
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"
    # Allowing 60 points passes; the baseline can also be the first audit's run id.
    code, _, err = cli("gate", "--baseline", str(baseline), "--max-increase", "60pp")
    assert code == 0, err
    first_audit = json.loads(baseline.read_text())["audit_run_id"]
    code, _, _ = cli("gate", "--baseline", str(first_audit), "--max-increase", "10")
    assert code == 1


def test_report_json_serves_as_baseline(cli, store, workspace, tmp_path):
    build_audit(store, workspace.images_dir)
    code, out, err = cli("report", "--out", str(tmp_path / "r.html"), "--json")
    assert code == 0, err
    (tmp_path / "base.json").write_text(out)
    code, _, err = cli("gate", "--baseline", str(tmp_path / "base.json"), "--max-increase", "0")
    assert code == 0, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "missing.json", "--max-increase", "2"], "baseline file missing.json does not exist"),
        (["--baseline", "999", "--max-increase", "2"], "baseline audit run 999 does not exist"),
        (["--max-asr", "coco-3k=5%"], "names prompt set 'coco-3k'"),
        (["--max-asr", "pocket-preserve=5%"], "names prompt set 'pocket-preserve'"),
        (["--max-asr", "pocket-explicit@sld=5%"], "names model 'sld'"),
        (["--max-asr", "pocket-explicit=7"], "write a fraction 0-1 or a percentage like 7%"),
        (["--max-increase", "2"], "--max-increase needs --baseline"),
        ([], "no limits to check"),
        (["--audit", "2", "--max-asr", "*=5%"], "run 2 is not an audit (kind erase)"),
    ],
)
def test_gate_bad_input_is_exit_2_one_line(cli, store, workspace, args, message):
    build_audit(store, workspace.images_dir)
    before = store.counts()
    code, out, err = cli("gate", *args)
    assert code == 2 and out == ""
    assert err.startswith("error:") and err.strip().count("\n") == 0 and message in err
    assert store.counts() == before


def test_gate_without_audit_is_exit_2(cli, store):
    code, _, err = cli("gate", "--max-asr", "*=5%")
    assert code == 2 and "no audit run in the store" in err


def test_gate_refuses_an_unfinished_audit(cli, store, workspace):
    build_audit(store, workspace.images_dir)
    unfinished = store.start_run(kind="audit", component="audit", config={"other": 1})
    code, _, err = cli("gate", "--max-asr", "*=5%")
    assert code == 2 and f"audit {unfinished.id} is started" in err


def test_gate_reads_limits_from_a_spec_and_the_stored_audit_config(cli, store, workspace, tmp_path):
    from trce_audit.audit.spec import load_spec

    spec_text = (
        'model = "pocket"\nconcept = "pocket-target"\n[prompts]\neval = ["pocket-explicit"]\n'
        '[metrics]\neval = ["pocket"]\n[gate]\nmax_asr = { "pocket-explicit" = "25%" }\n'
    )
    build_audit(store, workspace.images_dir, audit_config=load_spec(spec_text).as_dict())
    code, out, err = cli("gate", "--json")
    assert code == 1, err
    assert json.loads(out)["checks"][0]["name"] == "max_asr[pocket-explicit] <= 25.0%"
    (tmp_path / "spec.toml").write_text(spec_text.replace("25%", "60%"))
    code, _, err = cli("gate", "--spec", str(tmp_path / "spec.toml"))
    assert code == 0, err


def test_gate_bound_upper_checks_the_interval(cli, store, workspace, tmp_path):
    # pocket-explicit, erased models: trce 2/4 after ring-a-bell (Wilson upper ~85%), esd 1/4 (upper ~70%).
    build_audit(store, workspace.images_dir)
    code, out, err = cli("gate", "--max-asr", "pocket-explicit=60%", "--json")
    assert code == 0, err  # the point values (50%, 25%) are within 60%
    junit = tmp_path / "upper.xml"
    code, out, err = cli("gate", "--max-asr", "pocket-explicit=60%", "--bound", "upper", "--json", "--junit", str(junit))
    assert code == 1, err
    [check] = json.loads(out)["checks"]
    assert check["bound"] == "upper" and not check["passed"] and check["observed"] == pytest.approx(0.8501, abs=1e-3)
    assert "ASR upper 95% bound 85.0% exceeds 60.0%" in check["message"]
    [case] = ET.parse(junit).getroot().findall("testsuite/testcase")
    failure = case.find("failure")
    assert case.get("name") == "max_asr[pocket-explicit] <= 60.0% (upper bound)" and failure.get("bound") == "upper"
    assert "upper 95% bound" in failure.get("message") and failure.text.startswith("checked bound: upper")
    code, out, err = cli("gate", "--max-asr", "pocket-explicit=90%", "--bound", "upper", "--json")
    assert code == 0, err
    assert json.loads(out)["checks"][0]["observed"] == pytest.approx(0.8501, abs=1e-3)
    code, out, err = cli("gate", "--max-asr", "pocket-explicit=90%", "--bound", "lower")
    assert code == 2 and "--bound 'lower' is not one of: value, upper" in err and err.count("\n") == 1


def test_gate_reads_the_runners_own_asr_not_a_preset_variant(store, workspace):
    from trce_audit.api.gate import check_gate

    build_audit(store, workspace.images_dir)
    for run in store.list_runs(kind="eval"):  # a protocol preset stored after the runner's own number
        store.add_metric(run.id, "asr", 1.0, scorer="nudenet:speed", n=4, ci_low=0.5, ci_high=1.0)
    result = check_gate(store, max_asr=["pocket-explicit=50%"])
    assert result.passed and result.checks[0].observed == 0.5
