"""Prompt CSV files to PromptRow lists, with one-line errors that name the file, row and column."""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError
from ..records import MAX_SEED, PromptRow
from .registry import DEFAULT_GUIDANCE, DEFAULT_SEED, ColumnMap

USER_TEXT_COLUMNS = ("prompt", "text")
USER_SEED_COLUMNS = ("seed", "evaluation_seed")
USER_GUIDANCE_COLUMNS = ("guidance", "evaluation_guidance")


def read_bytes(path: Path) -> bytes:
    if os.path.isdir(path):  # False, not an OSError, for a name too long to be a file (read_bytes says why)
        raise DataError(f"{path} is a directory, expected a file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte: no file system has such a name
        raise DataError(f"{str(path)!r} is not a file name (it holds a NUL byte)") from None


def decode_text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{source}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


class Table:
    """The header and data rows of a CSV text; rows are checked against the header as they are read."""

    def __init__(self, text: str, source: str):
        self.source = source
        self._reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(self._reader, None)
        except csv.Error as exc:
            raise DataError(f"{source}: line 1: malformed CSV ({exc})") from None
        if header is None or not any(name.strip() for name in header):
            raise DataError(f"{source}: the file is empty (no header row)")
        duplicated = sorted(name for name, count in Counter(header).items() if count > 1)
        if duplicated:
            raise DataError(f"{source}: the header names column {duplicated[0]!r} more than once")
        self.header = header
        self.index = {name: i for i, name in enumerate(header)}

    def require(self, column: str) -> int:
        if column not in self.index:
            raise DataError(
                f"{self.source}: row 0 (header), column {column!r} is missing; the header has "
                + ", ".join(repr(name) for name in self.header)
            )
        return self.index[column]

    def rows(self) -> Iterator[tuple[int, int, list[str]]]:
        """(data row number from 1, physical line, fields); blank lines are skipped."""
        number = 0
        width = len(self.header)
        while True:
            try:
                fields = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DataError(f"{self.source}: line {self._reader.line_num}: malformed CSV ({exc})") from None
            if not fields:
                continue
            number += 1
            if len(fields) != width:
                raise DataError(
                    f"{self.source}: row {number} (line {self._reader.line_num}) has {len(fields)} fields, "
                    f"the header has {width}"
                )
            yield number, self._reader.line_num, fields

    def error(self, number: int, line: int, column: str, problem: str) -> DataError:
        return DataError(f"{self.source}: row {number} (line {line}), column {column!r}: {problem}")


def parse_seed(value: str) -> int:
    text = value.strip()
    try:
        seed = int(text)
    except ValueError:
        try:
            as_float = float(text)  # pandas writes integer columns with NaNs as "42.0"
        except ValueError:
            raise ValueError(f"{value!r} is not an integer seed") from None
        if not as_float.is_integer():
            raise ValueError(f"{value!r} is not an integer seed") from None
        seed = int(as_float)
    if not 0 <= seed <= MAX_SEED:  # torch takes up to 2**64-1, the store's BIGINT less
        raise ValueError(f"seed {seed} is outside 0..2**63-1 (the store holds seeds as 64-bit signed integers)")
    return seed


def parse_guidance(value: str) -> float:
    try:
        guidance = float(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(guidance):
        raise ValueError(f"{value!r} is not a finite number")
    return guidance


def control_character(text: str, allowed: str = "\t") -> str | None:
    """A description of the first control character in ``text`` not in ``allowed`` (NUL, ESC, newline, DEL, C1 …)."""
    for position, char in enumerate(text, start=1):
        code = ord(char)
        if char not in allowed and (code < 0x20 or 0x7F <= code < 0xA0 or char in "\u2028\u2029"):
            name = "a NUL byte" if code == 0 else f"control character U+{code:04X}"
            return f"{name} at character {position}; prompts must be printable text (tab allowed)"
    return None


# Python's own limit on int(str) (sys.get_int_max_str_digits' default): a longer run of digits stays text.
_MAX_INT_DIGITS = 4300


def _meta_value(value: str) -> Any:
    """A meta cell of ASCII digits as an int (as it has always been stored), anything else as its text:
    other digits ("²", "٣") and runs past int()'s digit limit stay strings."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= _MAX_INT_DIGITS else value


def prompt_rows(table: Table, columns: ColumnMap, *, limit: int | None = None, line_breaks: bool = False) -> list[PromptRow]:
    """Rows as PromptRows. Prompt text with a control character other than tab is refused; ``line_breaks``
    also lets through the line breaks some published sets carry inside quoted prompts (I2P, COCO)."""
    allowed = "\t\n\r" if line_breaks else "\t"
    text_at = table.require(columns.text)
    seed_at = table.require(columns.seed) if columns.seed else None
    guidance_at = table.require(columns.guidance) if columns.guidance else None
    meta_at = [(name, table.index[name]) for name in columns.meta if name in table.index]
    require_at = table.require(columns.require[0]) if columns.require else None
    rows: list[PromptRow] = []
    if limit is not None and limit <= 0:
        return rows
    for number, line, fields in table.rows():
        if require_at is not None:
            wanted = columns.require[1]  # type: ignore[index]
            if wanted not in (part.strip() for part in fields[require_at].split(",")):
                continue
        seed, guidance = columns.default_seed, columns.default_guidance
        try:
            column = columns.seed
            if seed_at is not None:
                seed = parse_seed(fields[seed_at])
            column = columns.guidance
            if guidance_at is not None:
                guidance = parse_guidance(fields[guidance_at])
        except ValueError as exc:
            raise table.error(number, line, column or "", str(exc)) from None
        problem = control_character(fields[text_at], allowed)
        if problem is not None:
            raise table.error(number, line, columns.text, problem)
        meta: dict[str, Any] = {"source_row": number}
        meta.update((name, _meta_value(fields[i])) for name, i in meta_at)
        rows.append(PromptRow(fields[text_at], seed, guidance, meta))
        if limit is not None and len(rows) >= limit:
            break
    return rows


def user_columns(table: Table) -> ColumnMap:
    """Columns of a user's own CSV: `prompt` or `text`, optional seed and guidance, the rest as meta."""

    def first(candidates: tuple[str, ...]) -> str | None:
        return next((name for name in candidates if name in table.index), None)

    text = first(USER_TEXT_COLUMNS)
    if text is None:
        raise DataError(
            f"{table.source}: row 0 (header), column 'prompt' (or 'text') is missing; the header has "
            + ", ".join(repr(name) for name in table.header)
        )
    seed, guidance = first(USER_SEED_COLUMNS), first(USER_GUIDANCE_COLUMNS)
    used = {text, seed, guidance}
    meta = tuple(name for name in table.header if name.strip() and name not in used)
    return ColumnMap(text, seed, guidance, meta, DEFAULT_SEED, DEFAULT_GUIDANCE)
