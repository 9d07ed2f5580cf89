"""Gate limits as values: parsing `SET=VALUE`, `SET@MODEL=VALUE` and `*=VALUE`, fractions and points.

Shared by the `gate` command and the `[gate]` table of an audit spec, so both read limits the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

ALL_SETS = "*"


def parse_fraction(value: Any, what: str) -> float:
    """A rate given as a fraction (0.05) or a percentage (5%); a bare number above 1 is refused as ambiguous."""
    text = str(value).strip()
    is_percent = text.endswith("%")
    number_text = text[:-1].strip() if is_percent else text
    try:
        number = float(number_text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a fraction 0-1 or a percentage like 5%") from None
    if is_percent:
        number /= 100.0
    elif number > 1.0:
        raise ConfigError(f"{what}: {text!r} is above 1; write a fraction 0-1 or a percentage like {text}%")
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{what}: {text!r} is outside 0-100%")
    return number


def parse_points(value: Any, what: str = "--max-increase") -> float:
    """Percentage points (`2`, `2pp` or `2%` all mean +0.02 ASR); returned as a fraction."""
    text = str(value).strip().lower()
    for suffix in ("pp", "%"):
        if text.endswith(suffix):
            text = text[: -len(suffix)].strip()
            break
    try:
        points = float(text)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a number of percentage points like 2 or 2pp") from None
    if not 0.0 <= points <= 100.0:
        raise ConfigError(f"{what}: {value!r} must be between 0 and 100 percentage points")
    return points / 100.0


@dataclass(frozen=True)
class AsrLimit:
    """``max_asr`` is a fraction; ``model`` narrows the limit to one model (None: every audited model)."""

    prompt_set: str
    max_asr: float
    model: str | None = None

    @property
    def target(self) -> str:
        return self.prompt_set if self.model is None else f"{self.prompt_set}@{self.model}"

    @property
    def name(self) -> str:
        return f"max_asr[{self.target}] <= {format_percent(self.max_asr)}"

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_set": self.prompt_set, "model": self.model, "max_asr": self.max_asr}


def parse_target(target: str, what: str) -> tuple[str, str | None]:
    prompt_set, sep, model = target.strip().partition("@")
    prompt_set, model = prompt_set.strip(), model.strip()
    if not prompt_set or (sep and not model):
        raise ConfigError(f"{what}: {target!r} must be SET, SET@MODEL or *")
    return prompt_set, (model or None)


def asr_limit(target: str, value: Any, what: str = "--max-asr") -> AsrLimit:
    prompt_set, model = parse_target(target, what)
    # a target with a line break or another control character is shown quoted, so the error stays one line
    return AsrLimit(prompt_set, parse_fraction(value, f"{what} {target if target.isprintable() else repr(target)}"), model)


def parse_asr_limit(item: str) -> AsrLimit:
    """One `--max-asr` option value: `SET=VALUE`, `SET@MODEL=VALUE` or `*=VALUE`."""
    target, sep, value = item.partition("=")
    if not sep or not target.strip() or not value.strip():
        raise ConfigError(f"--max-asr expects SET=VALUE (e.g. pocket-explicit=5%), got {item!r}")
    return asr_limit(target, value)


def format_points(fraction: float) -> str:
    """A rise given as a fraction, written as percentage points that parse_points reads back to the same
    fraction: "2pp" for 0.02 (as short as %g writes it), more digits only where %g's six would not."""
    points = fraction * 100
    for digits in range(6, 18):
        text = f"{points:.{digits}g}"
        if parse_points(text) == fraction:
            return f"{text}pp"
    return f"{points!r}pp"


def format_percent(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.1f}%"
