"""JUnit XML for CI systems: one test case per checked limit, a <failure> for each one exceeded."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .check import GateResult


def junit_xml(result: GateResult) -> str:
    audit = result.view.audit_run_id
    suite_name = f"trce-audit gate (audit {audit})" if audit is not None else "trce-audit gate"
    failures = sum(not check.passed for check in result.checks)
    suites = ET.Element("testsuites", name="trce-audit", tests=str(len(result.checks)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(result.checks)), failures=str(failures), errors="0")
    for check in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"trce-audit.gate.{check.kind}", name=check.name)
        if check.passed:
            ET.SubElement(case, "system-out").text = check.message
        else:
            failure = ET.SubElement(case, "failure", message=check.message, type="LimitExceeded")
            failure.set("bound", check.bound)  # which number failed: the ASR value or its interval's upper end
            failure.text = f"checked bound: {check.bound}\n" + "\n".join(
                f"{row['model']} / {row['prompt_set']} / {row['attack'] or 'no attack'}: ASR {row['asr']:.4f}"
                + (f", upper 95% bound {row['ci_high']:.4f}" if "ci_high" in row else "")
                + (f" (baseline {row['baseline']:.4f})" if "baseline" in row else "")
                for row in check.rows
            )
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result: GateResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(result), encoding="utf-8")
    return path
