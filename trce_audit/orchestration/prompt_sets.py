"""One reading of a prompt-set reference, for every run that draws from a stored set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import data  # called through the package: tests replace its loaders there
from ..errors import DataError
from ..parsing import row_id

if TYPE_CHECKING:
    from ..store import Store
    from ..workspace import Workspace


def resolve_prompt_set(store: "Store", workspace: "Workspace", prompts: str | int, *, limit: int | None = None) -> int:
    """A stored prompt-set id from an id, "set:ID", or a name known to trce_audit.data (stored on first use)."""
    text = str(prompts).strip()
    if isinstance(prompts, int) or (text.isascii() and text.isdigit()) or text.startswith("set:"):
        digits = text.split(":", 1)[1] if text.startswith("set:") else text
        number = row_id(digits)  # ASCII digits: "²" is a digit to isdigit(), not to int()
        if number is None:
            raise DataError(f"prompt set id must be an integer, got {str(prompts)[:40]!r}")
        return store.get_prompt_set(number).id
    return data.ensure_prompt_set(store, text, workspace=workspace, limit=limit)
