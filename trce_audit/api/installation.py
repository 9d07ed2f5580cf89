"""What this installation can do: one check per line, each with the fix when something is missing.

Reads only: no file is written, the store is opened without creating it, and the hub check honours
HF_HUB_OFFLINE and gives up after a few seconds. torch is imported only by the device check.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ..models.builtin import BUILTINS, is_installed, missing_remedy
from ..models.defaults import HUB_TIMEOUT_S, hub_cached, hub_offline, hub_reachable
from ..models.device import resolve_device
from ..models.resolve import REFERENCE_HUB_MODELS
from ..store.engine import mask_url
from ..workspace import Workspace

__all__ = ["doctor"]

PACKAGES = ("trce-audit", "torch", "diffusers", "transformers", "huggingface-hub", "safetensors", "sqlalchemy", "typer")
# Models that runners default to, beside the reference checkpoints: (hub id, a file every snapshot has).
METRIC_MODELS = {"openai/clip-vit-large-patch14": "the clip metric's default"}


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail, "fix": "" if ok else fix}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_checks() -> list[dict[str, Any]]:
    rows = []
    for package in PACKAGES:
        version = _version(package)
        fix = "pip install 'torch>=2.1' (pick the CUDA or CPU build from pytorch.org)" if package == "torch" else f"pip install {package}"
        rows.append(_check(f"package {package}", version is not None, version or "not installed", fix))
    return rows


def device_check() -> dict[str, Any]:
    try:
        device = resolve_device("auto")
    except ImportError:
        return _check("device", False, "torch is not installed", "install torch (see the README's install section)")
    import torch  # deferred: the device check alone imports torch

    if device == "cuda":
        detail = f"cuda ({torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda})"
        return _check("device", True, f"--device auto uses {detail}")
    hint = "" if torch.version.cuda else " (this torch is a CPU build)"
    return _check("device", True, f"--device auto uses cpu: no CUDA device visible to torch {torch.__version__}{hint}")


def hub_check() -> dict[str, Any]:
    if hub_offline():
        return _check("hub", True, "offline (HF_HUB_OFFLINE is set): only cached models load")
    if hub_reachable(HUB_TIMEOUT_S):
        return _check("hub", True, "huggingface.co is reachable")
    return _check(
        "hub", False, f"huggingface.co did not answer within {HUB_TIMEOUT_S:.0f} s",
        "set HF_HUB_OFFLINE=1 to work offline (cached models and --model pocket), or fix the network/proxy",
    )


def model_checks() -> list[dict[str, Any]]:
    rows = []
    for repo_id, what in {**REFERENCE_HUB_MODELS, **METRIC_MODELS}.items():
        cached = hub_cached(repo_id, "model_index.json" if repo_id in REFERENCE_HUB_MODELS else "config.json")
        rows.append(_check(
            f"model {repo_id}", cached, "in the Hugging Face cache" if cached else f"not cached: {what}",
            f"huggingface-cli download {repo_id} (with network), or pass a local folder with --model; "
            "offline, --model pocket works without downloads",
        ))
    for name in BUILTINS:
        installed = is_installed(name)
        rows.append(_check(f"model {name}", installed, "installed with the package" if installed else f"not installed ({BUILTINS[name].description})",
                           missing_remedy(name)))
    return rows


def extra_checks() -> list[dict[str, Any]]:
    nudenet = all(importlib.util.find_spec(name) is not None for name in ("nudenet", "onnxruntime"))
    cleanfid = importlib.util.find_spec("cleanfid") is not None
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    return [
        _check("extra nudenet", nudenet, "NudeNet detector importable" if nudenet else "NudeNet is not installed (the nudenet metric needs it; AGPL licence file)",
               "pip install 'trce-audit[nudenet]'"),
        _check("extra fid", cleanfid, "clean-fid importable" if cleanfid else "clean-fid is not installed (the fid metric needs it)",
               "pip install --no-deps 'clean-fid==0.1.35' (its torchvision dependency is optional here)"),
        _check("extra ray", importlib.util.find_spec("ray") is not None,
               "ray importable (--executor ray)" if importlib.util.find_spec("ray") else "ray is not installed (only --executor ray needs it)",
               "pip install 'trce-audit[ray]'"),
        _check("extra postgres", importlib.util.find_spec("psycopg") is not None,
               "psycopg importable (--db postgresql+psycopg://...)" if importlib.util.find_spec("psycopg") else "psycopg is not installed (only a Postgres --db needs it)",
               "pip install 'trce-audit[postgres]'"),
        _check("chromium", bool(chromium), chromium or "not on PATH (only the report browser test uses it)",
               "apt-get install -y chromium"),
    ]


def store_check(workspace: Workspace) -> dict[str, Any]:
    try:
        url = make_url(workspace.db_url)
    except Exception as exc:  # a malformed URL: report it, never echo a password
        return _check("store", False, f"the store URL does not parse ({type(exc).__name__})", "fix --db / TRCE_AUDIT_DB")
    shown = mask_url(url)  # the password, and a password or token in the query, as ***
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return _check("store", True, f"{shown}: not created yet (the first command that stores a result creates it)")
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3} if url.get_backend_name() == "postgresql" else {})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return _check("store", False, f"{shown}: cannot open ({type(exc).__name__})", "check --db / TRCE_AUDIT_DB and that the server runs")
    return _check("store", True, f"{shown} opens")


def doctor(workspace: Workspace) -> list[dict[str, Any]]:
    """Every check, in the order they are printed."""
    return [*package_checks(), device_check(), hub_check(), *model_checks(), *extra_checks(), store_check(workspace)]
