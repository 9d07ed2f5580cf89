#!/usr/bin/env bash
# Writes constraints/test.txt, the lock the README's test command (scripts/test.sh) and CI install from:
# the exact version of every package in the test environment. Run it on Linux x86_64 with Python 3.11
# (the kind of machine CI runs on), commit the result, and say in the commit what moved:
#   bash scripts/lock.sh
# The package's own dependency ranges (pyproject.toml) stay loose for users; only tests are pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }  # the machine's pip.conf names local indexes that may be absent
quiet "$work/venv/bin/python" -m pip install -q --upgrade pip
quiet "$work/venv/bin/python" -m pip install -q torch==2.13.0 -e '.[test]'
# clean-fid's metadata pulls torchvision (see scripts/test.sh); it is installed without dependencies.
quiet "$work/venv/bin/python" -m pip install -q --no-deps 'clean-fid==0.1.35'
{
  echo "# The test environment's lock: every package scripts/test.sh installs, at the version CI tested."
  echo "# Written by \`bash scripts/lock.sh\` on $(uname -m), Python $("$work/venv/bin/python" -c 'import platform; print(platform.python_version())'); do not edit by hand."
  "$work/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v '^#' | sed -E 's/^(torch==[^+]+)\+.*/\1/' | LC_ALL=C sort -f
} > constraints/test.txt
echo "wrote constraints/test.txt ($(grep -vc '^#' constraints/test.txt) packages)"
