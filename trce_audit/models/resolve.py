"""Model specs to pipeline folders, with a content fingerprint and safe-loading rules.

A spec is one of: ``pocket`` or ``pocket-flux`` (the shipped pocket-world models), ``artefact:ID`` or a bare integer (an
erased model in the store), a local diffusers folder, or a Hugging Face hub id; any of them followed by
``+lora:PATH`` (repeatable) is that model with diffusers-format LoRA files folded into its weights
(models/lora_files.py; each file's sha256 is part of the fingerprint). A folder may carry an
inference-time guard (``trce_audit_guard.json``); it is part of the folder's fingerprint and
``load_pipeline`` attaches it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError, one_line
from ..hashing import hash_obj, sha256_file
from ..parsing import row_id
from ..workspace import temp_sibling, user_path
from .builtin import BUILTIN_MODELS, builtin_folder
from .device import torch_dtype
from .families import DECLARED_T5_LENGTH, PIPELINE_CLASS, family_name, load_family, own_sampling
from .folder import is_pipeline_folder, load_guard, read_guard_record, world_of

if TYPE_CHECKING:
    from ..store import Store
    from ..workspace import Workspace

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
FINGERPRINT_SUFFIXES = WEIGHT_SUFFIXES + (".json", ".txt", ".model")

REFERENCE_HUB_MODELS: dict[str, str] = {
    "CompVis/stable-diffusion-v1-4": "the reference model of the TRCE paper; download needs hub access",
}


@dataclass(frozen=True)
class ModelRef:
    spec: str
    kind: str  # "builtin", "folder", "hub", "artefact"
    path: Path
    fingerprint: str
    world: str = "sd"  # "sd" or "pocket": which concept world the model lives in
    artefact_id: int | None = None
    guard: str | None = None  # the inference-time guard the folder carries (trce_audit_guard.json)
    loras: tuple[tuple[str, str], ...] = ()  # (path, sha256) of LoRA files folded in when loaded

    def __post_init__(self) -> None:
        if self.guard is None:
            record = read_guard_record(self.path) if Path(self.path).is_dir() else None
            object.__setattr__(self, "guard", record["name"] if record else None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "world": self.world,
            "artefact_id": self.artefact_id,
            "guard": self.guard,
            **({"loras": [list(entry) for entry in self.loras]} if self.loras else {}),
        }


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def check_pickle(folder: Path, allow_pickle: bool) -> None:
    """Refuse a folder whose weights exist only as pickle files, unless the user allows pickle."""
    if allow_pickle:
        return
    by_dir: dict[Path, list[Path]] = {}
    for path in _weight_files(folder):
        by_dir.setdefault(path.parent, []).append(path)
    for directory, files in by_dir.items():
        if not any(f.suffix == ".safetensors" for f in files):
            pickled = next(f for f in files if f.suffix in PICKLE_SUFFIXES)
            raise ModelError(
                f"{pickled} is a pickle checkpoint (it can run code when loaded); "
                "convert it to safetensors or pass --allow-pickle"
            )


def fingerprint_folder(folder: Path, cache_dir: Path | None = None) -> str:
    """sha256 over configs and weights. Cached by (path, size, mtime) since SD weights take seconds."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(FINGERPRINT_SUFFIXES))
    if not files:
        raise ModelError(f"{folder} holds no model files")
    stat_key = hash_obj([[p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files])
    cache_file = cache_dir / "fingerprints.json" if cache_dir else None
    cache: dict[str, str] = {}
    if cache_file and cache_file.exists():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
    key = f"{folder.resolve()}|{stat_key}"
    if key in cache:
        return cache[key]
    fingerprint = hash_obj([[p.relative_to(folder).as_posix(), sha256_file(p)] for p in files])
    if cache_file:
        cache[key] = fingerprint
        tmp = temp_sibling(cache_file)
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    return fingerprint


def _download(spec: str, allow_pickle: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download  # deferred: resolving a local folder needs no hub client
    except ImportError as exc:  # pragma: no cover - a dependency of diffusers
        raise ModelError("huggingface_hub is needed to download models") from exc
    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
    if allow_pickle:
        patterns.append("*.bin")
    try:
        return Path(snapshot_download(spec, allow_patterns=patterns, ignore_patterns=["*.fp16.*", "*non_ema*", "*.ema.*"]))
    except Exception as exc:
        raise ModelError(f"cannot download model {spec!r} from the hub: {type(exc).__name__}: {one_line(exc)}") from exc


LORA_MARK = "+lora:"
# A Hugging Face repo id: owner/name, each of letters, digits, "-", "_", "." (not first), at most 96 long.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def split_lora_spec(spec: str) -> tuple[str, list[str]]:
    """(the base model's spec, the LoRA file paths) of ``BASE+lora:PATH[+lora:PATH…]``."""
    base, *paths = spec.split(LORA_MARK)
    return base.strip(), [p.strip() for p in paths]


def with_loras(base: ModelRef, spec: str, paths: list[str]) -> ModelRef:
    """``base`` with LoRA files to fold in: each must be a safetensors file; their sha256s join the fingerprint."""
    entries = []
    for raw in paths:
        path = user_path(raw)
        if not raw or not path.is_file():
            raise ModelError(f"LoRA file {raw!r} of model {spec!r} does not exist")
        if path.suffix != ".safetensors":
            raise ModelError(f"LoRA file {path} is not a .safetensors file (a pickle can run code when loaded)")
        entries.append((str(path.resolve()), sha256_file(path)))
    fingerprint = hash_obj({"base": base.fingerprint, "loras": [sha for _, sha in entries]})
    return ModelRef(spec, base.kind, base.path, fingerprint, world=base.world, artefact_id=base.artefact_id,
                    guard=base.guard, loras=tuple(entries))


def resolve_model(
    spec: str,
    *,
    store: "Store | None" = None,
    workspace: "Workspace | None" = None,
    allow_pickle: bool = False,
) -> ModelRef:
    spec = spec.strip()
    if not spec:
        raise ModelError("empty model spec")
    if LORA_MARK in spec:
        base_spec, paths = split_lora_spec(spec)
        if not base_spec:
            raise ModelError(f"model {spec!r} names LoRA files but no base model before {LORA_MARK!r}")
        base = resolve_model(base_spec, store=store, workspace=workspace, allow_pickle=allow_pickle)
        return with_loras(base, spec, paths)
    def cache_dir() -> Path | None:  # created when a fingerprint is written, not by a spec that fails first
        return workspace.cache_dir if workspace else None

    if spec in BUILTIN_MODELS:
        folder = builtin_folder(spec)
        return ModelRef(spec, "builtin", folder, fingerprint_folder(folder, cache_dir()), world="pocket")
    artefact_id = None
    if spec.startswith("artefact:"):
        artefact_id = spec.split(":", 1)[1]
    elif spec.isascii() and spec.isdigit():  # ASCII digits: "²" is a digit to isdigit(), not to int()
        artefact_id = spec
    if artefact_id is not None:
        if store is None:
            raise ModelError(f"model {spec!r} names an artefact but no store is open")
        number = row_id(artefact_id)
        if number is None and artefact_id.isascii() and artefact_id.isdigit():  # more digits than an id has
            raise ModelError(f"artefact {artefact_id[:40]}{'…' if len(artefact_id) > 40 else ''} does not exist")
        if number is None:
            raise ModelError(f"artefact id must be an integer, got {artefact_id[:40]!r}")
        artefact = store.get_artefact(number)
        folder = Path(artefact.path)
        if not is_pipeline_folder(folder):
            raise ModelError(f"artefact {artefact_id} points at {folder}, which is no longer a pipeline folder")
        return ModelRef(spec, "artefact", folder, artefact.sha256, world=world_of(folder), artefact_id=artefact.id)
    local = user_path(spec)
    if os.path.exists(local):  # False (not an OSError) for a name too long for the file system
        if not local.is_dir() or not is_pipeline_folder(local):
            raise ModelError(f"{local} is not a diffusers pipeline folder (no model_index.json)")
        check_pickle(local, allow_pickle)
        return ModelRef(spec, "folder", local.resolve(), fingerprint_folder(local, cache_dir()), world=world_of(local))
    if not HUB_ID.fullmatch(spec):  # what the hub accepts: checked here, so its multi-line refusal never shows
        raise ModelError(f"model {spec[:120]!r} is neither a local folder, an artefact id, 'pocket', 'pocket-flux', nor a hub id (owner/name)")
    folder = _download(spec, allow_pickle)
    check_pickle(folder, allow_pickle)
    return ModelRef(spec, "hub", folder, fingerprint_folder(folder, cache_dir()), world=world_of(folder))


def locate_model(spec: str, *, store: "Store | None" = None) -> Path | None:
    """The pipeline folder ``spec`` names, found as ``resolve_model`` finds it but without fingerprinting
    it (which writes the workspace's cache) or downloading anything: None for a hub id. Lets a caller
    check what depends only on the folder before anything is written."""
    spec = split_lora_spec(spec.strip())[0]
    if spec in BUILTIN_MODELS:
        return builtin_folder(spec)
    if spec.startswith("artefact:") or (spec.isascii() and spec.isdigit()):
        return resolve_model(spec, store=store).path  # an artefact's stored fingerprint: nothing is hashed
    local = user_path(spec)
    if os.path.exists(local):
        if not local.is_dir() or not is_pipeline_folder(local):
            raise ModelError(f"{local} is not a diffusers pipeline folder (no model_index.json)")
        return local.resolve()
    return None


def model_world(spec: str | None, *, store: "Store | None" = None, workspace: "Workspace | None" = None) -> str:
    """The concept world of a model spec, without downloading or fingerprinting anything (fingerprinting
    writes the workspace's cache): a hub id is an SD model."""
    if spec is None:
        return "sd"
    if split_lora_spec(spec.strip())[0] in BUILTIN_MODELS:  # every built-in model lives in the pocket world
        return "pocket"
    folder = locate_model(spec, store=store)
    return world_of(folder) if folder is not None else "sd"


def quiet_hub_loggers() -> None:
    """Silence per-file loading bars and warnings of diffusers and transformers; our own progress is shown instead."""
    # Deferred: both libraries import torch. Transformers first, because importing diffusers' pipelines
    # makes transformers warn about image processors we never use.
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def load_pipeline(ref: ModelRef, *, dtype: str = "fp32", device: str = "cpu", allow_pickle: bool = False):
    """The diffusers pipeline of ``ref``'s family with no safety checker (we measure, not filter)."""
    family = family_name(ref.path)  # an unsupported pipeline class stops here, before any weights load
    quiet_hub_loggers()
    import diffusers  # deferred: diffusers imports torch

    precision = torch_dtype(dtype)
    # A plugin family's folder names its own class in model_index.json, which DiffusionPipeline follows.
    pipeline_class = getattr(diffusers, PIPELINE_CLASS.get(family, "DiffusionPipeline"))
    # SD 1.x/2.x folders may carry a safety checker, which would blank the images we measure.
    unchecked = {"safety_checker": None, "requires_safety_checker": False} if family == "sd" else {}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = pipeline_class.from_pretrained(
                str(ref.path), torch_dtype=precision, use_safetensors=not allow_pickle, local_files_only=True, **unchecked
            )
    except Exception as exc:
        raise ModelError(f"cannot load pipeline from {ref.path}: {type(exc).__name__}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    if ref.loras:
        from .lora_files import fold_lora_files  # torch at top: only a LoRA target needs it

        fold_lora_files(pipe, list(ref.loras), load_family(family).denoiser)
    # An inference-time eraser (SLD, SAFREE) travels with its folder and guards every sampler of it.
    pipe.trce_guard = load_guard(ref.path)
    own = own_sampling(ref.path)
    if own is not None:  # pocket-flux: the pipeline's own defaults (diffusers' and the family's) at its size and T5 length
        pipe.default_sample_size = own[0] // pipe.vae_scale_factor
        setattr(pipe, DECLARED_T5_LENGTH, own[1])
    return pipe.to(device)
