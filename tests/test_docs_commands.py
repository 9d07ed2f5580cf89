"""Every `trce-audit …` command in README.md and docs/*.md parses against the CLI's own options.

Each command is parsed by the click command tree without running it: an option the CLI lacks, a missing
required option or a value of the wrong kind fails here, so the docs cannot drift from the product.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_INLINE = re.compile(r"`(trce-audit [^`]+)`")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        blocks = [re.sub(r"\\\n\s*", " ", block) for block in _FENCE.findall(text)]
        prose = _FENCE.sub("", text)
        for command in _INLINE.findall(prose):
            found.append((path.name, command))
        for block in blocks:
            for line in block.splitlines():
                line = re.sub(r"^\s*(?:-\s+)?(?:run:\s*|\$\s*)", "", line)
                if line.startswith("trce-audit "):
                    found.append((path.name, line.split(" #")[0].strip()))
    return found


def _words(command: str) -> list[str]:
    """The arguments a shell would pass: no redirections, no synopsis brackets."""
    command = re.sub(r"\s*\[[^\]]*…\]|\s*\[--[^\]]*\]", "", command)  # `[--concept C]` in a synopsis
    words = shlex.split(command)[1:]
    for cut in (">", "|", "2>"):
        if cut in words:
            words = words[: words.index(cut)]
    return words


def _parse(words: list[str]) -> None:
    from trce_audit.cli import click_command

    command = click_command()
    ctx = command.make_context("trce-audit", list(words), resilient_parsing=False)
    while hasattr(command, "resolve_command"):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            return
        _, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(command.name, rest, parent=ctx)


def test_the_docs_name_commands():
    assert len(documented_commands()) >= 20


@pytest.mark.parametrize("source, command", documented_commands(), ids=lambda value: value[:60])
def test_documented_command_parses(source, command):
    words = _words(command)
    if words in (["--help"], ["--version"]):
        return  # eager options: they print and exit by design
    try:
        _parse(words)
    except Exception as exc:  # a usage error: the docs name an option or value the CLI lacks
        pytest.fail(f"{source}: `{command}` does not parse: {exc}")
