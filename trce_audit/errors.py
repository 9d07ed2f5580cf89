"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class TrceAuditError(Exception):
    """Bad input or a state the user must fix; the message is shown as a single line."""

    exit_code = 2


class DataError(TrceAuditError):
    """A prompt set, concept list or other data file is missing or malformed."""


class StoreError(TrceAuditError):
    """The result store cannot be opened or does not hold what was asked for."""


class ModelError(TrceAuditError):
    """A model spec cannot be resolved or loaded."""


class PluginError(TrceAuditError):
    """An eraser, attack or metric name is unknown or its plugin fails to load."""


class ConfigError(TrceAuditError):
    """A component configuration has an unknown key or a value of the wrong type."""


def one_line(message: object) -> str:
    """Collapse a message to a single line so that it prints as one."""
    return " ".join(str(message).split())
