"""Evaluate a model on a prompt set: generate (or reuse) its images and measure them (orchestration.eval_runs)."""

from __future__ import annotations

from ..orchestration.eval_runs import evaluate

__all__ = ["evaluate"]
