"""The device a command runs on (``auto``, the default, is CUDA when torch sees a GPU, else the CPU) and
the precision it computes in."""

from __future__ import annotations

from ..errors import ConfigError

AUTO = "auto"
# Precision names users write -> torch dtype names (torch stays unimported until one is needed). fp64 is
# for reference checks on a CPU: tests compare two computation paths in it (tests/tolerance.py).
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}


def check_device(name: str) -> str:
    """The device name as given, or a one-line error for one that is neither auto, cpu, cuda[:N] nor mps."""
    text = (name or AUTO).strip()
    head, _, index = text.partition(":")
    if text in (AUTO, "cpu", "mps") or (head == "cuda" and (not index or (index.isascii() and index.isdigit()))):
        return text
    raise ConfigError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps")


def resolve_device(name: str | None = AUTO) -> str:
    """A concrete device for ``name``; torch is imported only to answer ``auto``."""
    text = check_device(name or AUTO)
    if text != AUTO:
        return text
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_dtype(name: str) -> str:
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return name


def torch_dtype(name: str):
    """The torch dtype for a precision name (a one-line error for an unknown one)."""
    import torch

    return getattr(torch, DTYPES[check_dtype(name)])


def widened(x):
    """A tensor in float32 or wider: half precision is computed in float32, float64 stays float64."""
    return x if x.dtype.itemsize >= 4 else x.float()
