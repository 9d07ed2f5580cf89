"""Measure a pocket-world model with the pocket detector, and draw the docs picture.

``evaluate`` (``python -m trce_audit.pocket_eval.evaluate``) and ``figure`` sample through the package's
one sampler (``generation.engine.BatchSampler``) and one Fréchet distance (``metrics.fid``), which the
pocket package itself, sitting below both, may not import.
"""
