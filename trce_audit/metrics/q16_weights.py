"""Q16's two pieces, loaded at run time: CLIP ViT-L/14's image tower from the Hugging Face hub (as SD's
weights are), and Q16's learned prompt embeddings from its repository, fetched once into the workspace
cache and checked against their sha256. What cannot be had (offline and not cached) is a one-line
error naming what to download; nothing is fetched while the hub is set offline.

The prompts file is a pickled float16 numpy array [2, 768]: row 0 "non inappropriate", row 1
"inappropriate" (Q16 main/paper_experiments/experiments.py ``labels``). It is read with an unpickler
that admits numpy's array reconstruction only, so a swapped file cannot run code.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import logging as hub_logging

from ..errors import ConfigError, DataError, one_line
from ..hashing import sha256_file
from ..models.resolve import quiet_hub_loggers
from ..workspace import user_path

CLIP_MODEL = "openai/clip-vit-large-patch14"  # CLIP ViT-L/14, as Q16's inference_images.py loads it ('ViT-L/14')
PROMPTS_COMMIT = "33de788767bbe33cf77a5f6df931cd86c71f294f"
PROMPTS_SOURCE = f"ml-research/Q16 data/ViT-L-14/prompts.p@{PROMPTS_COMMIT}"
PROMPTS_URL = f"https://raw.githubusercontent.com/ml-research/Q16/{PROMPTS_COMMIT}/data/ViT-L-14/prompts.p"
PROMPTS_SHA256 = "9b6c411824c2f64e0f847aa3c9f2b15b8e3a6c75e0efd82f2f672670c97ccad5"
LABELS = ("non inappropriate", "inappropriate")
TIMEOUT_S = 60.0


class Missing(Exception):
    """One piece that cannot be had; its message says what to download."""


def quiet_hub() -> None:
    """No loading bars, and none of the hub client's retry warnings: a CLIP that cannot be had is one line."""
    quiet_hub_loggers()
    hub_logging.set_verbosity_error()


def offline() -> bool:
    """The hub's own switches: when set, nothing is downloaded, the Q16 prompts included."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def default_prompts_path(downloads_dir: Path | None) -> Path:
    base = downloads_dir if downloads_dir is not None else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trce-audit"
    return base / "q16" / "ViT-L-14-prompts.p"


def fetch_prompts(target: Path) -> Path:
    """Q16's ViT-L/14 prompts at ``target``: kept when the pinned file is there, else downloaded and checked."""
    if target.is_file() and sha256_file(target) == PROMPTS_SHA256:
        return target
    how = f"download {PROMPTS_URL} to {target} (sha256 {PROMPTS_SHA256[:12]}…) where the network is reachable, or pass prompts=FILE"
    if offline():
        raise Missing(f"Q16's prompts ({PROMPTS_SOURCE}) are not cached and the hub is set offline: {how}")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".q16-prompts.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(PROMPTS_URL, timeout=TIMEOUT_S) as response:
            data = response.read()
            out.write(data)
        if hashlib.sha256(data).hexdigest() != PROMPTS_SHA256:
            raise Missing(f"Q16's prompts downloaded from {PROMPTS_URL} do not match their sha256; nothing was cached: {how}")
        os.replace(temp, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Missing(f"Q16's prompts ({PROMPTS_SOURCE}) are not cached and cannot be downloaded ({one_line(reason)}): {how}") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            try:  # numpy 2 moved numpy.core to numpy._core
                return importlib.import_module("numpy._core.multiarray")._reconstruct
            except ImportError:
                return importlib.import_module("numpy.core.multiarray")._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"a prompts file holds a numpy array only, not {module}.{name}")


def read_prompts(path: Path) -> np.ndarray:
    """The [2, D] prompt embeddings of a Q16 prompts.p (or a .npy), as float32."""
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with path.open("rb") as handle:
                array = _ArraysOnly(handle).load()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"Q16 prompts {path} cannot be read: {one_line(exc)}") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.shape[0] != 2:
        raise DataError(f"Q16 prompts {path} must hold a [2, D] array (non inappropriate, inappropriate), got {getattr(array, 'shape', type(array).__name__)}")
    return array.astype(np.float32)


def prompts_file(option: str, downloads_dir: Path | None) -> Path:
    if option:
        path = user_path(option)
        if not path.is_file():
            raise ConfigError(f"Q16 prompts file {path} does not exist")
        return path
    return fetch_prompts(default_prompts_path(downloads_dir))


def in_hub_cache(model: str) -> bool:
    try:
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except ValueError:  # not a hub id (a path that does not exist)
        return False


def clip_missing(model: str, exc: Exception) -> Missing:
    """Why a CLIP could not be loaded, and what to download when it is a hub id not in the cache."""
    if user_path(model).is_dir() or in_hub_cache(model):
        return Missing(f"CLIP {model} cannot be loaded ({type(exc).__name__}: {one_line(exc)[:200]})")
    state = "the hub is set offline" if offline() else f"it cannot be downloaded ({type(exc).__name__})"
    return Missing(f"CLIP {model!r} is not in the Hugging Face cache and {state}: download it where the hub is reachable "
                   f"with `hf download {model}`, or pass clip_model=FOLDER")
