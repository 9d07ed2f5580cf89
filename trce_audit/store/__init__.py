"""The SQLite (any SQLAlchemy URL) result store: schema, migrations and typed operations."""

# The store's interface speaks these types, so they are importable from here as well as from their homes.
from ..hashing import prompt_row_hash, run_identity
from ..records import PromptRow
from .repository import Store
from .runs import RunHandle

__all__ = ["PromptRow", "RunHandle", "Store", "prompt_row_hash", "run_identity"]
