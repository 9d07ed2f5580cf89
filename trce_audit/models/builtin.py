"""The built-in models (``--model pocket``, ``--model pocket-flux``): one table of what each is, where its
folder lives and how to make it when it is missing, so that no two lists of their names can disagree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .folder import is_pipeline_folder


@dataclass(frozen=True)
class Builtin:
    description: str  # for `trce-audit models`
    folder: str  # "MODULE.NAME": the constant of a trce_audit.pocket module that holds the folder
    remedy: str  # how to make it when it is missing ({folder}: where it belongs), for the one-line error


BUILTINS: dict[str, Builtin] = {
    "pocket": Builtin(
        "the pocket-world model shipped inside trce-audit (SD architecture, offline, CPU-fast)",
        "models.MODEL_DIR",
        "reinstall trce-audit",
    ),
    "pocket-flux": Builtin(
        "the pocket-world model of FLUX.1's architecture (when its weights are installed; docs/pocket-world.md), "
        "offline, CPU-fast",
        "flux_models.FLUX_MODEL_DIR",
        "train it with python -m trce_audit.pocket.train_flux --out {folder} --seed 0 --device cpu "
        "--threads 1 --max-minutes 90 (docs/pocket-world.md), or reinstall trce-audit",
    ),
}
# Built-in model ids, described for `trce-audit models`; resolved lazily (no torch import).
BUILTIN_MODELS: dict[str, str] = {name: entry.description for name, entry in BUILTINS.items()}


def builtin_folder(spec: str) -> Path:
    """The folder a built-in model name stands for; a one-line error saying how to get it when it is not
    installed."""
    from ..pocket import flux_models, models  # deferred: the pocket package imports torch

    module, constant = BUILTINS[spec].folder.split(".")
    folder = getattr({"models": models, "flux_models": flux_models}[module], constant)
    if not is_pipeline_folder(folder):
        raise ModelError(f"the {spec} model is missing from the installation; {BUILTINS[spec].remedy.format(folder=folder)}")
    return folder
