"""The one tolerance rule for floats computed along two paths (docs/testing.md, "Tolerances").

Two paths to the same value (batched or one at a time, fused or per image, an executor or in process,
a closed form or a direct solve, AVX2 or AVX-512 kernels, 1 or 2 threads) add the same terms in other
orders. Summing n terms with unit roundoff u errs by at most n·u·Σ|terms| (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., §4.2), so two such sums of values of magnitude ``scale``
differ by at most 2·n·u·scale. Every comparison bounds |a − b| by

    path_atol = 2 · gain · terms · u(dtype) · scale

- ``terms``: the longest accumulation on the path (a matmul's inner dimension, a convolution's fan-in,
  the pixels a norm sums), as the call site says;
- ``scale``: the magnitude of the values compared (their largest absolute value);
- ``gain``: how much the work after that accumulation can grow a difference (a sampler's steps times
  its guidance scale, an optimiser's normalisation: ``adam_gain``), 1 when nothing does.

The bound is a worst case, far above what any CPU gives, and far below what a real bug gives (a row
mixed up with another, a unit trained with another's data: differences of the values' own size).
"""

from __future__ import annotations

import math

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}


def unit_roundoff(dtype) -> float:
    """u for a torch or numpy dtype (or its name)."""
    name = str(dtype).replace("torch.", "")
    return UNIT_ROUNDOFF[name]


def path_atol(scale: float, *, terms: int, dtype="float32", gain: float = 1.0) -> float:
    return 2.0 * gain * terms * unit_roundoff(dtype) * float(scale)


def adam_gain(*, steps: int, lr: float, grad_bound: float, scale: float, eps: float = 1e-8) -> float:
    """Adam's step is lr·m/(√v + eps): a gradient element near eps carries an absolute rounding error δ
    into a step change of up to lr·δ/(4·eps), so each step can grow δ by lr/(4·eps) (relative to the
    weights' ``scale``, with δ ≤ terms·u·grad_bound)."""
    return steps * lr * grad_bound / (4.0 * eps * scale)


def sqrtm_atol(scale: float, *, n: int, dtype="float64") -> float:
    """A matrix square root is not Lipschitz at a zero eigenvalue: for a singular (or rank-deficient)
    n×n product of matrices rounded in ``dtype`` it is accurate to √u·scale per diagonal entry, not
    u·scale (Higham, *Functions of Matrices*, §6.1), summed over n of them."""
    return 2.0 * n * math.sqrt(unit_roundoff(dtype)) * float(scale)


def assert_paths_agree(actual, expected, *, terms: int, gain: float = 1.0, scale: float | None = None, dtype=None) -> None:
    """|actual − expected| ≤ path_atol, elementwise. The magnitude is the expected values' unless
    given (a value that should be zero has the magnitude of what cancelled); ``dtype`` is where the
    rounding happened when that is narrower than the compared tensors (float32 weights checked in float64)."""
    import torch

    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}"
    magnitude = float(expected.abs().max()) if scale is None else scale
    rounding = expected.dtype if dtype is None else dtype
    bound = path_atol(magnitude, terms=terms, dtype=rounding, gain=gain)
    # a bound near the values' own size would pass a mix-up too: such a comparison belongs in float64
    assert bound < 1e-3 * magnitude, f"the bound {bound:.3g} is not far below the values ({magnitude:.3g}); compare in float64"
    worst = float((actual.to(expected.dtype) - expected).abs().max()) if expected.numel() else 0.0
    assert math.isfinite(worst) and worst <= bound, (
        f"two paths differ by {worst:.3g}, above the bound {bound:.3g} "
        f"(2·gain {gain:.3g}·terms {terms}·u {unit_roundoff(rounding):.3g}·scale {magnitude:.3g})"
    )
