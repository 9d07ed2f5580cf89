"""``python -m trce_audit``: the command line, as the ``trce-audit`` script runs it."""

from trce_audit.cli import entry

entry()
