"""Tables on the terminal: cells fold onto more lines rather than end in "…", between words first."""

from __future__ import annotations

from typing import Any, Sequence

WHOLE_WORD = 24  # a column is at least as wide as its longest word up to this: names fold between words, not inside


def fitted_widths(cells: Sequence[Sequence[str]], room: int) -> list[int] | None:
    """Column widths for ``cells`` (one list of texts per column, the header first) in ``room`` characters:
    None when every column fits whole or their longest words do not fit together; else each column gets
    its longest word (up to ``WHOLE_WORD``) and the rest of the room makes whole the columns that lack
    least, then goes to the others in proportion."""
    longest = [max((len(line) for text in column for line in text.splitlines() or [""]), default=1) for column in cells]
    floor = [min(WHOLE_WORD, full, max((len(w) for text in column for w in text.split()), default=1))
             for column, full in zip(cells, longest)]
    if sum(longest) <= room or sum(floor) > room:
        # whole already; or not even the longest words fit, and Rich's own collapse (the widest columns
        # first) keeps short columns such as ids and statuses whole where fixed widths would cut them all
        return None
    widths, spare = list(floor), max(0, room - sum(floor))
    for index in sorted(range(len(cells)), key=lambda i: longest[i] - floor[i]):
        if longest[index] - floor[index] <= spare:
            spare -= longest[index] - floor[index]
            widths[index] = longest[index]
    lacking = {i: longest[i] - widths[i] for i in range(len(cells)) if widths[i] < longest[i]}
    for index, lack in lacking.items():
        widths[index] += spare * lack // sum(lacking.values())
    return widths


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], console: Any = None) -> None:
    """A table whose cells fold onto more lines rather than end in "…" when the terminal is narrow,
    at spaces first: each column keeps its longest word (``fitted_widths``), so a narrow terminal breaks
    "0.0% [0–32] → 87.5% [53–98]" at its spaces rather than "finetune-resurgence" inside."""
    from rich.console import Console  # deferred, as in every rich use: --help stays fast
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    texts = [["" if value is None else str(value) for value in row] for row in rows]
    # each cell is padded by one space a side, and the columns have n + 1 rules between and around them
    widths = fitted_widths([[column, *(row[i] for row in texts)] for i, column in enumerate(columns)],
                           console.width - 3 * len(columns) - 1)
    # Values are user text (prompts, paths): escape them so "[brackets]" are not read as Rich markup.
    table = Table(title=title, show_lines=False)
    for index, column in enumerate(columns):
        table.add_column(escape(column), overflow="fold", width=None if widths is None else widths[index])
    for row in texts:
        table.add_row(*(escape(text) for text in row))
    console.print(table)
