"""Download pinned data files into the workspace cache, and report which local copies match their pins."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import DataError, mask_url_secrets, scrub_url_secrets
from ..hashing import sha256_file
from ..workspace import Workspace
from .concepts import read_pairs
from .registry import CONCEPT_FILES, DEFAULT_BASE_URL, ENV_DATA_URL, PROMPT_SETS, data_file, fetchable_names
from .sets import find_local, read_prompt_csv

TIMEOUT_S = 60.0
_CHUNK = 1 << 16


def base_url(override: str | None = None) -> str:
    return override or os.environ.get(ENV_DATA_URL) or DEFAULT_BASE_URL


def fetch(
    name: str,
    workspace: Workspace,
    *,
    url_override: str | None = None,
    base_url_override: str | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download the file behind a set or concept name into the cache; verified before it is placed.

    ``url_override`` replaces the whole URL of this file, ``base_url_override`` (or TRCE_AUDIT_DATA_URL)
    the base under which the remote path is appended. A file already cached with the right hash is kept.
    """
    file = data_file(name)
    target = workspace.downloads_dir / file.local
    if target.is_file() and sha256_file(target) == file.sha256:
        return target
    url = url_override or file.url(base_url(base_url_override))
    shown = mask_url_secrets(url)  # a token in the URL (or in TRCE_AUDIT_DATA_URL) is never printed
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as exc:
                raise DataError(f"cannot download {name} from {shown}: HTTP {exc.code} {scrub_url_secrets(str(exc.reason), url)}") from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise DataError(f"cannot download {name} from {shown}: {scrub_url_secrets(str(reason), url)}") from None
        actual = digest.hexdigest()
        if actual != file.sha256:
            raise DataError(
                f"{name}: downloaded file from {shown} has sha256 {actual}, expected {file.sha256}; nothing was cached"
            )
        os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    return target


def fetch_all(workspace: Workspace, **options: Any) -> list[Path]:
    return [fetch(name, workspace, **options) for name in fetchable_names()]


def _file_status(path: Path | None, pinned: str) -> str:
    if path is None:
        return "missing"
    if not path.is_file():
        return "mismatch"
    try:
        return "verified" if sha256_file(path) == pinned else "mismatch"
    except OSError:
        return "mismatch"


def data_status(workspace: Workspace, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Per prompt set and concept list: kind, rows, source, pin and whether the local copy matches it."""
    records: list[dict[str, Any]] = []
    for spec in PROMPT_SETS.values():
        record: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "description": spec.description}
        if spec.file is None:
            record.update(rows=None, source=f"generated:{spec.provider}", sha256=None, status="generated", path=None)
            records.append(record)
            continue
        path = find_local(spec.file, workspace, data_dir)
        rows = None
        error = None
        if path is not None:
            try:
                rows = len(read_prompt_csv(path, spec))
            except DataError as exc:
                error = str(exc)
        record.update(
            rows=rows,
            source=mask_url_secrets(spec.file.url(base_url())),
            sha256=spec.file.sha256,
            status=_file_status(path, spec.file.sha256),
            path=str(path) if path else None,
        )
        if error:
            record["error"] = error
        records.append(record)
    for name, file in CONCEPT_FILES.items():
        path = find_local(file, workspace, data_dir)
        pairs = None
        if path is not None and path.is_file():
            try:
                pairs = len(read_pairs(path))
            except DataError:
                pairs = None
        records.append(
            {
                "name": name,
                "kind": "concepts",
                "description": f"[malicious, safe] pairs of the {name!r} concept",
                "rows": pairs,
                "source": mask_url_secrets(file.url(base_url())),
                "sha256": file.sha256,
                "status": _file_status(path, file.sha256),
                "path": str(path) if path else None,
            }
        )
    return records
