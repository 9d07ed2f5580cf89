"""The values an audit spec's keys may take, each refusal a one-line SpecError naming the key.

TOML has already typed every value, so typed keys go through `parsing.parse_value` strictly: the string
"3" is not a step count here, though `--set steps=3` is one on the command line.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Mapping

from ..errors import ConfigError
from ..parsing import ValueProblem, parse_value


class SpecError(ConfigError):
    """An audit spec is malformed; the message names the key."""

    def __init__(self, where: str, problem: str, file: object = None):
        self.where, self.problem, self.file = where, problem, file
        head = "audit spec" if file is None else f"audit spec {file}"
        super().__init__(f"{head}: {where}: {problem}" if where else f"{head}: {problem}")

    def in_file(self, path: object) -> "SpecError":
        """The same refusal naming the spec file it is in ("audit spec FILE: key: problem")."""
        return SpecError(self.where, self.problem, path)


def check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise SpecError(where or "top level", f"unknown key {key!r} (expected one of: {', '.join(allowed)})")


def typed(value: Any, hint: Any, where: str, *, minimum: float | None = None) -> Any:
    """``value`` as ``hint`` (see `parsing.parse_value`), bounded below by ``minimum``."""
    try:
        return parse_value(value, hint, strict=True, minimum=minimum)
    except ValueProblem as problem:
        raise SpecError(where, f"must be {problem.expected}, got {problem.value!r}") from None


def finite(value: float, where: str) -> float:
    """A number that is not NaN or infinite (TOML writes both as nan and inf)."""
    if not math.isfinite(value):
        raise SpecError(where, f"must be a finite number, got {value!r}")
    return value


def table(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(where, f"must be a table, got {type(value).__name__}")
    return value


def tables(value: Any, where: str) -> list[Any]:
    """An array of tables (``[[where]]``); its items are checked by whoever reads them."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(where, f"must be an array of tables ([[{where}]]), got {type(value).__name__}")
    return value


def name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(where, "must be a non-empty string")
    return value.strip()


def names(value: Any, where: str) -> tuple[str, ...]:
    """A list of distinct names; one bare string counts as a list of one."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise SpecError(where, f"must be a list of names, got {type(value).__name__}")
    found = tuple(name(item, f"{where}[{i}]") for i, item in enumerate(value))
    if len(set(found)) != len(found):
        raise SpecError(where, "lists a name twice")
    return found


def seeds(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(where, f"must be a non-empty list of seeds, e.g. [0, 1, 2], got {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 2**31:
            raise SpecError(where, f"seeds are integers from 0 to 2^31 - 1, got {item!r}")
    if len(set(value)) != len(value):
        raise SpecError(where, "lists a seed twice")
    return tuple(value)


def plain_table(value: Any, where: str) -> dict[str, Any]:
    """A table of config values: TOML's dates and times are refused (a run's config is JSON, which has
    none), anywhere inside it."""
    found = table(value, where)
    for key, sub in found.items():
        _no_dates(sub, f"{where}.{key}")
    return found


def _no_dates(value: Any, where: str) -> None:
    if isinstance(value, (datetime.date, datetime.time)):  # datetime.datetime is a date
        raise SpecError(where, f"must be a string, number, boolean, list or table, got the TOML date/time {value.isoformat()}")
    if isinstance(value, dict):
        for key, sub in value.items():
            _no_dates(sub, f"{where}.{key}")
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _no_dates(sub, f"{where}[{i}]")


def without_none(value: Any) -> Any:
    """``value`` with every None dropped, as a TOML file (which has no null) would hold it."""
    if isinstance(value, dict):
        return {key: without_none(sub) for key, sub in value.items() if sub is not None}
    if isinstance(value, list):
        return [without_none(sub) for sub in value]
    return value
