"""Metric runners. Each module holds one runner; ``BUILTIN`` maps plugin ids to classes lazily."""

BUILTIN: dict[str, str] = {}
