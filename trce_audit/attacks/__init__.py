"""Red-team attacks. Each module holds one family; ``BUILTIN`` maps plugin ids to classes lazily."""

BUILTIN: dict[str, str] = {}
