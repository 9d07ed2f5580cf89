"""The SQLite (any SQLAlchemy URL) result store: schema, migrations and typed operations."""

from .repository import PromptRow, RunHandle, Store, package_versions, prompt_row_hash, run_identity

__all__ = ["PromptRow", "RunHandle", "Store", "package_versions", "prompt_row_hash", "run_identity"]
