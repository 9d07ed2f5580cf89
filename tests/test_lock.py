"""The test environment's lock (constraints/test.txt) and the check that fails when it drifts."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

from conftest import REPO

LOCK = REPO / "constraints" / "test.txt"
CHECK = REPO / "scripts" / "check_lock.py"


def _canonical(name: str) -> str:
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def _requirement_name(requirement: str) -> str:
    for stop in "[<>=!~; ":
        requirement = requirement.split(stop, 1)[0]
    return _canonical(requirement)


def _pins() -> dict[str, str]:
    lines = [line.strip() for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {_canonical(name): version for name, _, version in (line.partition("==") for line in lines)}


def _check(lock_path):
    return subprocess.run([sys.executable, str(CHECK), str(lock_path)], capture_output=True, text=True)


def _installed() -> dict[str, str]:
    """What a fresh interpreter sees installed (this process may see more: Ray adds its vendored
    packages, such as colorama, to sys.path once imported)."""
    code = "import json; from importlib import metadata; print(json.dumps({d.metadata['Name']: d.version for d in metadata.distributions() if d.metadata['Name']}))"
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=CHECK.parent).stdout)


def test_the_lock_pins_every_dependency_the_tests_install():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_requirement_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    pins = _pins()
    assert wanted - set(pins) == set()
    assert pins["torch"] == "2.13.0" and pins["clean-fid"] == "0.1.35"  # what scripts/test.sh asks for by name


def test_a_lock_matching_this_environment_passes(tmp_path):
    present = _installed()
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\n" + "".join(f"{name}=={version}\n" for name, version in present.items()))
    result = _check(lock)
    assert (result.returncode, result.stderr) == (0, "")


def test_drift_fails_in_one_line_naming_the_package(tmp_path):
    present = _installed()
    numpy_version = present.pop("numpy")
    lock = tmp_path / "lock.txt"
    lock.write_text("".join(f"{name}=={version}\n" for name, version in present.items()) + "numpy==0.0.1\n")
    result = _check(lock)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert f"numpy {numpy_version} is installed, the lock says 0.0.1" in result.stderr

    del present["pytest"]  # installed, not locked: drift as well
    lock.write_text("".join(f"{name}=={version}\n" for name, version in present.items()) + f"numpy=={numpy_version}\n")
    result = _check(lock)
    assert result.returncode == 1 and "pytest" in result.stderr and "not in the lock" in result.stderr


def test_a_local_build_label_is_the_locked_version(tmp_path):
    present = _installed()
    assert "+" in present["torch"]  # the CPU wheel installs as 2.13.0+cpu; the lock says 2.13.0
    lock = tmp_path / "lock.txt"
    lock.write_text("".join(f"{name}=={version.split('+')[0]}\n" for name, version in present.items()))
    assert _check(lock).returncode == 0
