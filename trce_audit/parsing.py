"""One parser for typed config values: a `--set` string, a TOML value or a Python value as a field's type.

Eraser configs, attack configs and the audit spec each phrase a refusal their own way, so this module only
says what was expected (``ValueProblem.expected``) and which value it refused. A parsed value enters run
identities: a value one of the old converters accepted must keep parsing to the same thing.
"""

from __future__ import annotations

import types
import typing
from typing import Any

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
NONE_WORDS = frozenset({"none", "null", ""})
_NONE = type(None)


class ValueProblem(ValueError):
    """A value its type hint refuses. ``expected`` completes "must be …" ("an integer", "one of all, corpus");
    ``value`` is what was refused: one item, when an item of a list is the culprit."""

    def __init__(self, expected: str, value: Any):
        super().__init__(f"expected {expected}, got {value!r}")
        self.expected = expected
        self.value = value


def parse_value(value: Any, hint: Any, *, strict: bool = False, minimum: float | None = None) -> Any:
    """``value`` as ``hint`` (bool, int, float, str, Optional, Literal, ``tuple[T, ...]``), or ValueProblem.

    Lenient (``--set`` strings): words for booleans and none, integral floats as ints, "a,b" or "a;b" as a
    tuple, anything as a string. ``strict`` (TOML, already typed): only a value of the type itself; an int
    counts as a number and is kept as an int. ``minimum`` bounds numbers (tuple items included). A union of
    several types, and a type this parser does not know, pass the value through as given.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        allowed = [arg for arg in args if arg is not _NONE]
        if len(allowed) < len(args) and _means_none(value, strict):
            return None
        return parse_value(value, allowed[0], strict=strict, minimum=minimum) if len(allowed) == 1 else value
    if origin is typing.Literal:
        return _literal(value, args, strict)
    if origin is tuple:
        return _tuple(value, args[0] if args else Any, strict, minimum)
    if hint is bool:
        return _bool(value, strict)
    if hint is int:
        return _int(value, strict, minimum)
    if hint is float:
        return _float(value, strict, minimum)
    if hint is str:
        if isinstance(value, str):
            return value
        # a number written where a name is expected (--set label=5) reads as its text; a list, a table,
        # a boolean or nothing would read as Python's repr of it, so they are refused
        if not strict and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueProblem("a string", value)
    return value


def select_names(spec: str, known: typing.Iterable[str], kind: str) -> tuple[str, ...]:
    """Names from "all", "none" or a comma list (duplicates dropped, order kept); an unknown name is a
    ValueError naming ``kind`` and listing the known ones."""
    known = tuple(known)
    text = str(spec).strip().lower()
    if text == "all":
        return known
    if text in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {kind}(s) {', '.join(unknown)}; known: all, none, {', '.join(known)}")
    return names


def row_id(text: str) -> int | None:
    """An id a user typed (a run, an artefact, a stored prompt set) as an int: ASCII digits only, and no
    more of them than a 64-bit id has ("²" is a digit to ``str.isdigit`` but not to ``int``, and ``int``
    refuses thousands of digits); None for anything else."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else None


def _means_none(value: Any, strict: bool) -> bool:
    return value is None or (not strict and isinstance(value, str) and value.strip().lower() in NONE_WORDS)


def _literal(value: Any, choices: tuple, strict: bool) -> Any:
    for choice in choices:
        # a bool is an int in Python, so strict matching compares types as well
        same = (value == choice and type(value) is type(choice)) if strict else str(value) == str(choice)
        if same:
            return choice
    raise ValueProblem(f"one of {', '.join(map(str, choices))}", value)


def _tuple(value: Any, item: Any, strict: bool, minimum: float | None) -> tuple:
    if isinstance(value, str) and not strict:
        # items keep their spaces: a string item " b" has always been stored so
        items: list[Any] = [part for part in value.replace(";", ",").split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueProblem("a list", value)
    return tuple(parse_value(part, item, strict=strict, minimum=minimum) for part in items)


def _bool(value: Any, strict: bool) -> bool:
    if isinstance(value, bool):
        return value
    if not strict:
        word = str(value).strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
    raise ValueProblem("true or false", value)


def _expected(kind: str, minimum: float | None) -> str:
    if minimum is None:
        return f"an {kind}" if kind == "integer" else f"a {kind}"
    if minimum == 1 and kind == "integer":
        return "a positive integer"
    if minimum == 0:
        return f"a non-negative {kind}"
    return f"{'an' if kind == 'integer' else 'a'} {kind} of at least {minimum:g}"


def _int(value: Any, strict: bool, minimum: float | None) -> int:
    expected = _expected("integer", minimum)
    if isinstance(value, bool):  # True is an int to Python, never to a config
        raise ValueProblem(expected, value)
    if isinstance(value, int):
        number = value
    elif strict or (isinstance(value, float) and not value.is_integer()):
        raise ValueProblem(expected, value)
    elif isinstance(value, float):
        number = int(value)
    else:
        try:
            number = int(str(value).strip(), 10)
        except ValueError:
            raise ValueProblem(expected, value) from None
    if minimum is not None and number < minimum:
        raise ValueProblem(expected, value)
    return number


def _float(value: Any, strict: bool, minimum: float | None) -> float:
    expected = _expected("number", minimum)
    if isinstance(value, bool):
        raise ValueProblem(expected, value)
    if strict:
        if not isinstance(value, (int, float)):
            raise ValueProblem(expected, value)
        number = value
    else:
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError, OverflowError):
            raise ValueProblem(expected, value) from None
    # "<", not "not >=": a NaN the spec's budget check let through stays accepted
    if minimum is not None and number < minimum:
        raise ValueProblem(expected, value)
    return number
