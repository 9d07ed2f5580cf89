"""The pocket world: a tiny Stable-Diffusion-architecture model, its procedural image world,
caption grammar, prompt sets and concept detector -- the offline default model (``--model pocket``).

Public API (import from ``trce_audit.pocket``):

* ``model_path()`` -> Path of the shipped diffusers folder (StableDiffusionPipeline layout).
* ``load_pipeline(path=None, device="cpu", dtype=torch.float32)`` -> StableDiffusionPipeline.
* ``pocket_prompt_set(name)`` -> list of ``{text, seed, guidance, meta}``; names in ``PROMPT_SETS``.
* ``CONCEPTS`` -> target metadata (target, keywords, keyword/safe pairs, which sets evaluate it).
* ``load_detector(path=None, device="cpu")``, ``detect(images)`` -> [B, 6] probabilities over
  ``CONCEPT_NAMES``; ``detect_all(images)``; ``detector_features(images)`` -> [B, 128];
  ``detector_info()`` -> {version, concepts, sha256, path}; ``DETECTOR_VERSION``.
* ``frechet_distance(feats_a, feats_b)``.
* ``world`` module: ``sample_scenes(n, seed)``, ``render(scenes)``, ``caption(scene, rng)``.
"""

from __future__ import annotations

from . import world
from .detector import (CONCEPT_NAMES, DETECTOR_PATH, DETECTOR_VERSION, detect, detect_all,
                       detector_features, detector_info, load_detector, weights_sha256)
from .prompts import CONCEPTS, PROMPT_SETS, keyword_safe_pairs, pocket_prompt_set
from .world import KEYWORD_SAFE_PAIRS, KINDS, TARGET

__all__ = [
    "world", "CONCEPT_NAMES", "DETECTOR_PATH", "DETECTOR_VERSION", "detect", "detect_all",
    "detector_features", "detector_info", "load_detector", "weights_sha256", "CONCEPTS", "PROMPT_SETS",
    "keyword_safe_pairs", "pocket_prompt_set", "KEYWORD_SAFE_PAIRS", "KINDS", "TARGET", "model_path",
    "load_pipeline", "frechet_distance",
]


def model_path():
    from .models import MODEL_DIR

    return MODEL_DIR


def load_pipeline(path=None, device="cpu", dtype=None):
    import torch

    from .evaluate import load_pipeline as _lp

    return _lp(path, device, dtype or torch.float32)


def frechet_distance(feats_a, feats_b) -> float:
    from .evaluate import frechet_distance as _fd

    return _fd(feats_a, feats_b)
