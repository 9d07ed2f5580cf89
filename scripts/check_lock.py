"""Fail in one line when the installed test environment differs from the lock (constraints/test.txt).

    python scripts/check_lock.py [LOCK]

Run by scripts/test.sh after the install, before the tests: CI tests exactly the versions that were
locked, and a release upstream cannot change what main tests without a commit here. Exit 0 when every
locked package is installed at its locked version and nothing else is installed; else one line on
stderr naming the first package that differs (and how many more do) and exit 1.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

DEFAULT_LOCK = Path(__file__).resolve().parents[1] / "constraints" / "test.txt"
PROJECT = "trce-audit"  # installed editable, so not in the lock


def canonical(name: str) -> str:
    """PEP 503 normalised name: pip freeze writes `Jinja2` and `tomli_w`, metadata may say `jinja2`."""
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def public(version: str) -> str:
    """The version without its local label: the CPU build `2.13.0+cpu` is the locked `2.13.0`."""
    return version.split("+", 1)[0]


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}:{number}: expected NAME==VERSION, got {raw.strip()!r}")
        pins[canonical(name.strip())] = version.strip()
    return pins


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def drift(pins: dict[str, str], present: dict[str, str]) -> list[str]:
    """Each difference as a phrase, locked packages first, in name order."""
    found = []
    for name in sorted(pins):
        if name not in present:
            found.append(f"{name} is locked at {pins[name]} but not installed")
        elif public(present[name]) != public(pins[name]):
            found.append(f"{name} {present[name]} is installed, the lock says {pins[name]}")
    for name in sorted(set(present) - set(pins) - {canonical(PROJECT)}):
        found.append(f"{name} {present[name]} is installed but not in the lock")
    return found


def main(argv: list[str]) -> int:
    lock = Path(argv[0]) if argv else DEFAULT_LOCK
    try:
        pins = read_lock(lock)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the lock: {exc}", file=sys.stderr)
        return 2
    problems = drift(pins, installed())
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"error: the test environment drifted from {lock.name}: {problems[0]}{more}; "
              "start from a fresh venv (`rm -rf .venv && bash scripts/test.sh`) or relock with `bash scripts/lock.sh`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
