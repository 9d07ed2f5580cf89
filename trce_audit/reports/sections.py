"""Several Markdown reports in one document: each written into its own named section.

A section is the text between ``<!-- trce-audit section NAME -->`` and ``<!-- trce-audit end section NAME -->``.
Writing a section replaces that section (or appends it) and leaves the rest of the file as it was;
writing the whole document keeps the sections the file already holds, after the new text. So a document
can hold one audit's report and the sections of others (docs/results-pocket.md: the SD audit, then the
FLUX one), each regenerated from its own store in either order. A section's headings sit one level
below the document's.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_SECTION = re.compile(r"<!-- trce-audit section ([a-z0-9-]+) -->\n.*?<!-- trce-audit end section \1 -->[ \t]*(?:\r?\n|\Z)", re.S)
_START = re.compile(r"<!-- trce-audit section ([a-z0-9-]+) -->")
_END = re.compile(r"<!-- trce-audit end section ([a-z0-9-]+) -->")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"--section {name!r}: use lower-case letters, digits and hyphens (at most 64)")
    return name


def _wrapped(name: str, text: str) -> str:
    demoted = "\n".join("#" + line if line.startswith("#") else line for line in text.rstrip("\n").split("\n"))
    return f"<!-- trce-audit section {name} -->\n{demoted}\n<!-- trce-audit end section {name} -->\n"


def sections_of(text: str) -> list[str]:
    return [found.group(0).rstrip("\r\n") + "\n" for found in _SECTION.finditer(text)]


def _check_balanced(text: str, where: str) -> None:
    """Each section's markers once and in order, so that replacing one can never take another with it."""
    starts, ends = _START.findall(text), _END.findall(text)
    for name in dict.fromkeys(starts + ends):
        if starts.count(name) != 1 or ends.count(name) != 1 or text.index(f"section {name} -->") > text.index(f"end section {name} -->"):
            raise ConfigError(f"section {name!r} of {where} is not one start marker followed by one end marker; fix the file by hand")


def merged(old: str | None, text: str, section: str | None, where: str = "the document") -> str:
    """The document after writing ``text``: as section ``section``, or as the whole (None)."""
    _check_balanced(old or "", where)
    if section is None:
        kept = sections_of(old or "")
        return text if not kept else text.rstrip("\n") + "\n\n" + "\n".join(kept)
    block = _wrapped(check_name(section), text)
    if old is None or not old.strip():
        return block
    for found in _SECTION.finditer(old):
        if found.group(1) == section:
            return old[: found.start()] + block + old[found.end():]
    return old.rstrip("\n") + "\n\n" + block


def write(path: Path, text: str, section: str | None) -> str:
    """Write atomically; returns what was written."""
    old = path.read_text(encoding="utf-8") if path.exists() else None
    document = merged(old, text, section, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)
    return document
