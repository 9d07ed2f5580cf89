"""Where a session's images, artefacts, caches and database live.

Settings come from explicit options or the environment and travel as a value, never as module state.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "TRCE_AUDIT_HOME"
ENV_DATA = "TRCE_AUDIT_DATA"
ENV_DB = "TRCE_AUDIT_DB"
DEFAULT_HOME = "trce-audit-workspace"
DOWNLOADS = "data"  # the folder downloaded prompt sets and concept lists go to, under the workspace


@dataclass(frozen=True)
class Workspace:
    root: Path
    db_url: str
    data_dir: Path | None = None

    @classmethod
    def from_options(
        cls,
        root: str | os.PathLike | None = None,
        db_url: str | None = None,
        data_dir: str | os.PathLike | None = None,
    ) -> "Workspace":
        root_path = Path(root or os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()
        url = db_url or os.environ.get(ENV_DB) or f"sqlite:///{root_path / 'trce-audit.sqlite'}"
        data = data_dir or os.environ.get(ENV_DATA)
        return cls(root=root_path, db_url=url, data_dir=Path(data).expanduser().resolve() if data else None)

    def with_data_dir(self, data_dir: str | os.PathLike | None) -> "Workspace":
        if data_dir is None:
            return self
        return Workspace(self.root, self.db_url, Path(data_dir).expanduser().resolve())

    def _dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def images_dir(self) -> Path:
        return self._dir("images")

    @property
    def artefacts_dir(self) -> Path:
        return self._dir("artefacts")

    @property
    def cache_dir(self) -> Path:
        return self._dir("cache")

    @property
    def downloads_dir(self) -> Path:
        """Prompt sets and concept lists fetched from their public sources."""
        return self._dir(DOWNLOADS)

    def ensure(self) -> "Workspace":
        self.root.mkdir(parents=True, exist_ok=True)
        return self


def temp_sibling(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process or thread picks: written, then
    ``os.replace``d onto ``path``, so a reader never sees half a file and two writers never share one."""
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def user_path(text: str | os.PathLike) -> Path:
    """``text`` as a path, a leading ``~`` or ``~user`` expanded as a shell expands it. A ``~user`` that
    names no user (or a ``~`` where there is no home) stays literal, as in a shell: pathlib raises
    RuntimeError there, which would reach the user as a traceback instead of "no such file"."""
    path = Path(text)
    try:
        return path.expanduser()
    except RuntimeError:
        return path
