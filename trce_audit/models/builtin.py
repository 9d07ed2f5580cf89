"""The built-in models (``--model pocket``, ``--model pocket-flux``): one table of what each is, where its
folder lives and how to make it when it is missing, so that no two lists of their names can disagree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .folder import is_pipeline_folder

# trce_audit/pocket/weights, found by path: importing trce_audit.pocket imports torch, and `trce-audit
# doctor` and `models` ask whether a built-in model is installed without it. tests/test_builtin_models.py
# pins these folders to the pocket package's MODEL_DIR and FLUX_MODEL_DIR.
POCKET_WEIGHTS = Path(__file__).resolve().parent.parent / "pocket" / "weights"


@dataclass(frozen=True)
class Builtin:
    description: str  # for `trce-audit models`
    folder: str  # the model's folder under trce_audit/pocket/weights
    remedy: str  # how to make it when it is missing ({folder}: where it belongs), for the one-line error


BUILTINS: dict[str, Builtin] = {
    "pocket": Builtin(
        "the pocket-world model shipped inside trce-audit (SD architecture, offline, CPU-fast)",
        "pocket-sd",
        "reinstall trce-audit",
    ),
    "pocket-flux": Builtin(
        "the pocket-world model of FLUX.1's architecture (docs/pocket-world.md), offline, CPU-fast",
        "pocket-flux",
        "train it with python -m trce_audit.pocket.train_flux --out {folder} --seed 0 --device cpu "
        "--threads 2 (docs/pocket-world.md), or reinstall trce-audit",
    ),
}
# Built-in model ids, described for `trce-audit models`; resolved lazily (no torch import).
BUILTIN_MODELS: dict[str, str] = {name: entry.description for name, entry in BUILTINS.items()}


def is_installed(spec: str) -> bool:
    return is_pipeline_folder(POCKET_WEIGHTS / BUILTINS[spec].folder)


def builtin_folder(spec: str) -> Path:
    """The folder a built-in model name stands for; a one-line error saying how to get it when it is not
    installed."""
    folder = POCKET_WEIGHTS / BUILTINS[spec].folder
    if not is_pipeline_folder(folder):
        raise ModelError(f"the {spec} model is missing from the installation; {missing_remedy(spec)}")
    return folder


def missing_remedy(spec: str) -> str:
    return BUILTINS[spec].remedy.format(folder=POCKET_WEIGHTS / BUILTINS[spec].folder)
