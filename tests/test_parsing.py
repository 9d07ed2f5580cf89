"""The one config-value parser: what eraser configs, attack configs and the audit spec accept, and what it
says it expected when it refuses. Parsed values enter run identities: every accepted value in the first
table is what one of the converters it replaces (erasers/config.py, attacks/base.py) produced."""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import pytest

from trce_audit.parsing import ValueProblem, parse_value

VOCABULARY = Literal["all", "corpus"]


@pytest.mark.parametrize(
    "value, hint, parsed",
    [
        (True, bool, True),
        (" YES ", bool, True),
        ("on", bool, True),
        ("Off", bool, False),
        ("0", bool, False),
        (1, bool, True),  # attack configs read an integer through its text
        (7, int, 7),
        (" 12 ", int, 12),
        ("+5", int, 5),
        ("1_000", int, 1000),
        (2.0, int, 2),
        (3, float, 3.0),
        (" 1.5 ", float, 1.5),
        ("1e3", float, 1000.0),
        ("keep", str, "keep"),
        (5, str, "5"),
        ("corpus", VOCABULARY, "corpus"),
        ("all", VOCABULARY, "all"),
        ("a, b", tuple[str, ...], ("a", " b")),  # items keep their spaces, as stored eraser configs have them
        ("1;2", tuple[int, ...], (1, 2)),
        ("1,,2,", tuple[int, ...], (1, 2)),
        ("", tuple[str, ...], ()),
        ([1.5, "2"], tuple[float, ...], (1.5, 2.0)),
        (("x",), tuple[str, ...], ("x",)),
        ("4", Optional[int], 4),
        ("4", int | None, 4),
        ("x", Optional[str], "x"),
        ("a,b", Optional[tuple[str, ...]], ("a", "b")),
        ("corpus", Optional[VOCABULARY], "corpus"),
    ],
)
def test_lenient_values_parse_to_the_declared_type(value: Any, hint: Any, parsed: Any):
    result = parse_value(value, hint)
    assert result == parsed and type(result) is type(parsed)


@pytest.mark.parametrize("word", [None, "none", " None ", "NULL", "null", "", "  "])
@pytest.mark.parametrize("hint", [Optional[int], float | None, Optional[str], Optional[tuple[int, ...]], Optional[VOCABULARY]])
def test_none_words_mean_none_only_where_the_field_is_optional(word, hint):
    assert parse_value(word, hint) is None


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        ("maybe", bool, "true or false"),
        (1.0, bool, "true or false"),
        (None, bool, "true or false"),
        (2.5, int, "an integer"),
        ("1.0", int, "an integer"),
        ("0x10", int, "an integer"),
        (float("inf"), int, "an integer"),
        (float("nan"), int, "an integer"),
        (True, int, "an integer"),  # a bool is an int to Python, never to a config
        (None, int, "an integer"),
        ("none", int, "an integer"),
        ("abc", float, "a number"),
        (False, float, "a number"),
        ([1], float, "a number"),
        (10**400, float, "a number"),
        ("ALL", VOCABULARY, "one of all, corpus"),
        (" all", VOCABULARY, "one of all, corpus"),
        ("random ", Literal["letters", "random"], "one of letters, random"),
        (5, tuple[int, ...], "a list"),
        ({"a": 1}, tuple[str, ...], "a list"),
        ("abc", Optional[int], "an integer"),
    ],
)
def test_refusals_say_what_was_expected(value: Any, hint: Any, expected: str):
    with pytest.raises(ValueProblem) as refused:
        parse_value(value, hint)
    assert refused.value.expected == expected
    assert refused.value.value is value or refused.value.value == value
    assert str(refused.value) == f"expected {expected}, got {value!r}"


def test_a_refused_list_item_is_the_value_the_problem_names():
    with pytest.raises(ValueProblem) as refused:
        parse_value("1, x,3", tuple[int, ...])
    assert (refused.value.expected, refused.value.value) == ("an integer", " x")
    with pytest.raises(ValueProblem) as refused:
        parse_value([0.5, "half"], tuple[float, ...])
    assert (refused.value.expected, refused.value.value) == ("a number", "half")


@pytest.mark.parametrize(
    "value, hint",
    [(True, bool), (3, int), (2**40, int), (0.25, float), ("text", str), ([1, 2], tuple[int, ...]), ("corpus", VOCABULARY),
     (None, Optional[int]), ("none", Optional[str]), ("", Optional[str])],
)
def test_strict_keeps_a_typed_value_as_it_is(value: Any, hint: Any):
    result = parse_value(value, hint, strict=True)
    assert result == (tuple(value) if isinstance(value, list) else value)
    assert type(result) is (tuple if isinstance(value, list) else type(value))


def test_strict_counts_an_int_as_a_number_and_keeps_it_an_int():
    result = parse_value(3, float, strict=True)
    assert result == 3 and type(result) is int  # a TOML budget of 3 hashes as 3, not 3.0


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        ("true", bool, "true or false"),
        (1, bool, "true or false"),
        ("3", int, "an integer"),
        (3.0, int, "an integer"),
        (True, int, "an integer"),
        ("0.5", float, "a number"),
        (True, float, "a number"),
        (5, str, "a string"),
        (None, str, "a string"),
        ("a,b", tuple[str, ...], "a list"),
        ([1, "2"], tuple[int, ...], "an integer"),
        (1, Literal[True, "yes"], "one of True, yes"),  # 1 == True in Python; strict matching compares types
        ("none", Optional[int], "an integer"),
    ],
)
def test_strict_refuses_any_other_type(value: Any, hint: Any, expected: str):
    with pytest.raises(ValueProblem) as refused:
        parse_value(value, hint, strict=True)
    assert refused.value.expected == expected


def test_strict_literal_matches_the_choice_of_the_same_type():
    assert parse_value(True, Literal[1, True], strict=True) is True
    assert parse_value(1, Literal[True, 1], strict=True) == 1


@pytest.mark.parametrize(
    "value, hint, minimum, expected",
    [
        (0, int, 1, "a positive integer"),
        ("0", int, 1, "a positive integer"),
        ("abc", int, 1, "a positive integer"),  # a wrong type names the bound too: one sentence per field
        (True, int, 1, "a positive integer"),
        (None, int, 1, "a positive integer"),
        (-1, int, 0, "a non-negative integer"),
        (2, int, 3, "an integer of at least 3"),
        (-0.5, float, 0, "a non-negative number"),
        ("x", float, 0, "a non-negative number"),
        (0.25, float, 0.5, "a number of at least 0.5"),
        ([2, 0], tuple[int, ...], 1, "a positive integer"),
    ],
)
def test_minimum_bounds_numbers_and_names_the_bound(value: Any, hint: Any, minimum: float, expected: str):
    for strict in (False, True):
        if strict and isinstance(value, str):
            continue
        with pytest.raises(ValueProblem) as refused:
            parse_value(value, hint, strict=strict, minimum=minimum)
        assert refused.value.expected == expected


def test_minimum_lets_values_at_or_above_the_bound_through():
    assert parse_value(1, int, strict=True, minimum=1) == 1
    assert parse_value(" 2 ", int, minimum=1) == 2
    assert parse_value(0, float, strict=True, minimum=0) == 0
    assert parse_value(None, int | None, strict=True, minimum=1) is None
    assert parse_value("3,4", tuple[int, ...], minimum=3) == (3, 4)
    # a NaN budget passed the spec's "value < 0" check, and still does
    assert math.isnan(parse_value(float("nan"), float, strict=True, minimum=0))


@pytest.mark.parametrize("hint", [int | str, Optional[int | str], dict, Any])
def test_unions_of_several_types_and_unknown_types_pass_the_value_through(hint):
    value = {"kept": [1]}
    assert parse_value(value, hint) is value


def test_an_optional_union_of_several_types_still_reads_none():
    assert parse_value("null", int | str | None) is None
    assert parse_value("7", int | str | None) == "7"
