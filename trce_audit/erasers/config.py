"""Typed eraser configs: dataclass defaults per world, overridden by a TOML file and `--set key=value`.

Kept free of torch so that the CLI can validate a config before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _convert_scalar(key: str, tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"config key {key!r} expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"config key {key!r} expects an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
        try:
            return float(value if not isinstance(value, str) else value.strip())
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} expects a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key!r} has an unsupported type {tp!r}")


def convert_value(key: str, tp: Any, value: Any) -> Any:
    """``value`` (from TOML or a `--set` string) as the field's declared type, or a one-line error."""
    inner, optional = _unwrap_optional(tp)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null", ""})):
        return None
    if typing.get_origin(inner) is tuple:
        item_tp = typing.get_args(inner)[0]
        if isinstance(value, str):
            items = [part for part in value.replace(";", ",").split(",") if part.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        return tuple(_convert_scalar(key, item_tp, item) for item in items)
    return _convert_scalar(key, inner, value)


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
            converted = convert_value(key, hints[key], value)
            choices = self.CHOICES.get(key)
            if choices and converted not in choices:
                raise ConfigError(f"config key {key!r} must be one of {', '.join(choices)}, got {converted!r}")
            changes[key] = converted
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    def validate(self) -> None:
        """Raise ConfigError for values that are well typed but out of range."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML config file as a flat mapping; a table named like the eraser may also hold the keys."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return data


def build_config(
    config_cls: type[EraserConfig],
    *,
    world: str = "sd",
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    section: str | None = None,
    concept: str | None = None,
) -> EraserConfig:
    """World (and concept) defaults, then the TOML file (top level, or its ``[section]`` table), then overrides."""
    config = config_cls.for_target(world, concept)
    if config_file is not None:
        data = read_config_file(config_file)
        if section and isinstance(data.get(section), dict):
            data = data[section]
        config = config.updated(data, source=str(config_file))
    if overrides:
        config = config.updated(dict(overrides))
    config.validate()
    return config
