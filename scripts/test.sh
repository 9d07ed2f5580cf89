#!/usr/bin/env bash
# The README's test command: a fresh venv with the CPU build of torch, the package and its test
# extras at the versions locked in constraints/test.txt (written by `bash scripts/lock.sh`), a check
# that nothing drifted from the lock, then the test suite. Benchmark data comes from ../shared/data
# when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=constraints/test.txt
python3 -m venv .venv
.venv/bin/python -m pip install -q -c "$lock" --upgrade pip
.venv/bin/python -m pip install -q -c "$lock" torch==2.13.0 -e '.[test]'
# clean-fid's own metadata pulls torchvision, whose PyPI build does not load beside the CPU torch;
# the FID runner needs only clean-fid's resizer, so install it without dependencies.
.venv/bin/python -m pip install -q -c "$lock" --no-deps clean-fid
.venv/bin/python scripts/check_lock.py "$lock"
if [ -z "${TRCE_AUDIT_DATA:-}" ] && [ -d ../shared/data ]; then
  export TRCE_AUDIT_DATA="$(cd ../shared/data && pwd)"
fi
exec .venv/bin/python -m pytest -q "$@"
