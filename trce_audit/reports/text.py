"""User text (prompts, model labels, set names, error messages) as a report may show it.

Autoescaping keeps markup from becoming elements; what it leaves are characters that change how the
text around them reads: C0 and C1 controls (NUL, ESC, a line break inside a one-line cell) and the
bidi embeddings, overrides and isolates that reverse what follows them. ``visible`` writes each as a
code ("⟨U+202E⟩"), so a label shows what it holds. ``markdown_cell`` also keeps a table cell one cell:
a pipe is escaped and line breaks become spaces.
"""

from __future__ import annotations

import html
import re

# C0 controls but tab, DEL and C1, the line and paragraph separators, and the bidi formatting characters.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\u2028\u2029\x0b\x0c\x85]")


def visible(text: str) -> str:
    """``text`` with each control or bidi formatting character (tab and line feed kept) as ⟨U+XXXX⟩."""
    return _INVISIBLE.sub(lambda found: f"⟨U+{ord(found.group()):04X}⟩", text)


def markdown_text(text: object) -> str:
    """Text for one line of Markdown: its line breaks as spaces, its markup characters shown as
    themselves (HTML as entities, so a viewer that renders HTML shows it as text), controls as codes."""
    line = " ".join(_LINE_BREAK.split(str(text)))
    return visible(html.escape(line, quote=False)).replace("\t", " ")


def markdown_cell(text: object) -> str:
    """``markdown_text`` that also stays one table cell: its pipes escaped."""
    return markdown_text(text).replace("|", "\\|")
