"""Typed eraser configs: dataclass defaults per world, overridden by a TOML file and `--set key=value`.

Kept free of torch so that the CLI can validate a config before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..parsing import ValueProblem, parse_value


@dataclasses.dataclass(frozen=True)
class EraserConfig:
    """Base of every eraser config. Subclasses declare typed fields; ``CHOICES`` limits string fields."""

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def for_world(cls, world: str = "sd") -> "EraserConfig":
        """The defaults for a world ("sd" or "pocket"); subclasses override where the worlds differ."""
        return cls()

    @classmethod
    def for_target(cls, world: str = "sd", concept: str | None = None) -> "EraserConfig":
        """The defaults for a world and the concept being erased; a reference setup that differs per
        concept (TRCE's unsafe preset) overrides this, every other config uses ``for_world``."""
        return cls.for_world(world)

    @classmethod
    def for_family(cls, family: str, world: str = "sd", concept: str | None = None) -> "EraserConfig":
        """The defaults on a model family other than SD 1.x/2.x, where the reference code sets its own
        (ESD's SDXL script); the SD defaults where it does not."""
        return cls.for_target(world, concept)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    def updated(self, values: Mapping[str, Any], source: str = "--set") -> "EraserConfig":
        """A copy with ``values`` applied; unknown keys and badly typed values are one-line errors."""
        hints = typing.get_type_hints(type(self))
        known = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"unknown config key {key!r} in {source} for {type(self).__qualname__}; known keys: {', '.join(sorted(known))}"
                )
            try:
                converted = parse_value(value, hints[key])
            except ValueProblem as problem:
                # the refused item, not the whole list, when one item of a tuple is the culprit
                raise ConfigError(f"config key {key!r} expects {problem.expected}, got {problem.value!r}") from None
            if not all(math.isfinite(item) for item in _numbers(converted)):  # no eraser trains with NaN or inf
                raise ConfigError(f"config key {key!r} expects a finite number, got {value!r}")
            choices = self.CHOICES.get(key)
            if choices and converted not in choices:
                raise ConfigError(f"config key {key!r} must be one of {', '.join(choices)}, got {converted!r}")
            changes[key] = converted
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    def validate(self) -> None:
        """Raise ConfigError for values that are well typed but out of range."""


def _numbers(value: Any) -> list[float]:
    items = value if isinstance(value, (tuple, list)) else (value,)
    return [item for item in items if isinstance(item, float)]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML config file as a flat mapping; a table named like the eraser may also hold the keys."""
    path = Path(path)
    if not os.path.isfile(path):  # False, not an OSError, for a name too long to be a file
        raise ConfigError(f"config file {path} does not exist")
    try:
        # utf-8-sig: a file saved by an editor that writes a byte-order mark reads as it shows
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is not valid TOML: nested deeper than the parser goes") from None
    return data


def build_config(
    config_cls: type[EraserConfig],
    *,
    world: str = "sd",
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    section: str | None = None,
    concept: str | None = None,
    family: str = "sd",
) -> EraserConfig:
    """World, family (and concept) defaults, then the TOML file (top level, or its ``[section]`` table),
    then overrides."""
    config = config_cls.for_target(world, concept) if family == "sd" else config_cls.for_family(family, world, concept)
    if config_file is not None:
        data = read_config_file(config_file)
        if section and isinstance(data.get(section), dict):
            data = data[section]
        config = config.updated(data, source=str(config_file))
    if overrides:
        config = config.updated(dict(overrides))
    config.validate()
    return config
