"""The pocket world: a tiny Stable-Diffusion-architecture model, its procedural image world,
caption grammar, prompt sets and concept detector -- the offline default model (``--model pocket``).

Public API (import from ``trce_audit.pocket``):

* ``pocket_prompt_set(name)`` -> list of ``{text, seed, guidance, meta}``; names in ``PROMPT_SETS``.
* ``CONCEPTS`` -> target metadata (target, keywords, keyword/safe pairs, which sets evaluate it).
* ``load_detector(path=None, device="cpu")``, ``detect(images)`` -> [B, 6] probabilities over
  ``CONCEPT_NAMES``; ``detect_all(images)``; ``detector_features(images)`` -> [B, 128];
  ``detector_info()`` -> {version, concepts, sha256, path}; ``DETECTOR_VERSION``.
* ``world`` module: ``sample_scenes(n, seed)``, ``render(scenes)``; ``captions`` module: ``caption(scene, rng)``.

The model folder is ``pocket.models.MODEL_DIR``; load it as any model, with
``models.resolve.load_pipeline(resolve_model("pocket"))``. Measuring a pocket model (sampling, the
detector's Fréchet distance) lives in ``trce_audit.pocket_eval``: it needs the sampler and the metrics,
which sit above this package.
"""

from __future__ import annotations

from . import captions, world
from .detector import (CONCEPT_NAMES, DETECTOR_PATH, DETECTOR_VERSION, detect, detect_all,
                       detector_features, detector_info, load_detector, weights_sha256)
from .prompts import CONCEPTS, PROMPT_SETS, keyword_safe_pairs, pocket_prompt_set
from .world import KEYWORD_SAFE_PAIRS, KINDS, TARGET

__all__ = [
    "world", "captions", "CONCEPT_NAMES", "DETECTOR_PATH", "DETECTOR_VERSION", "detect", "detect_all",
    "detector_features", "detector_info", "load_detector", "weights_sha256", "CONCEPTS", "PROMPT_SETS",
    "keyword_safe_pairs", "pocket_prompt_set", "KEYWORD_SAFE_PAIRS", "KINDS", "TARGET",
]
