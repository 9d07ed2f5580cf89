"""`python -m trce_audit.cli`: the same as the `trce-audit` console script."""

from . import entry

entry()
