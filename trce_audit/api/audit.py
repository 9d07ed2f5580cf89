"""Run an audit from a spec and summarise it from the store."""

from __future__ import annotations

import os
from typing import Any, Callable

from ..audit.spec import default_pocket_spec, load_spec
from ..orchestration.audit_runs import run_audit
from ..reports.collect import collect
from ..store import Store
from ..workspace import Workspace

__all__ = ["run_audit_spec"]


def run_audit_spec(
    store: Store,
    workspace: Workspace,
    spec: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    allow_pickle: bool = False,
    log: Callable[[str], None] | None = None,
    executor: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the audit described by ``spec`` (a TOML path or text; default: the shipped pocket audit).

    ``executor`` draws every evaluation's image shards (erasers and attack searches run here).
    ``log`` hears each step's name; ``progress`` its (stage, done, total) counts as it goes.
    Returns the audit run id, what it ran, and the comparison rows read back from the store.
    """
    parsed = load_spec(spec if spec is not None else default_pocket_spec())
    result = run_audit(store, workspace, parsed, device=device, log=log, allow_pickle=allow_pickle, executor=executor,
                       progress=progress)
    view = collect(store, audit_id=result["audit_run_id"])
    return {**result, "rows": [row.as_dict() for row in view.rows], "problems": list(view.problems)}
