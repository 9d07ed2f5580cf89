#!/usr/bin/env bash
# The README's demo: install trce-audit (CPU torch) into .venv, run the default pocket-world audit
# (erase with UCE and TRCE; attack; measure; about three minutes on a 2-core CPU after the install) and write report.html. Offline after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0 -e .
.venv/bin/trce-audit audit
.venv/bin/trce-audit report --out report.html
echo "wrote $(pwd)/report.html"
