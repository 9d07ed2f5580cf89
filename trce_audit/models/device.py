"""The device a command runs on: ``auto`` (the default) is CUDA when torch sees a GPU, else the CPU."""

from __future__ import annotations

from ..errors import ConfigError

AUTO = "auto"


def check_device(name: str) -> str:
    """The device name as given, or a one-line error for one that is neither auto, cpu, cuda[:N] nor mps."""
    text = (name or AUTO).strip()
    head, _, index = text.partition(":")
    if text in (AUTO, "cpu", "mps") or (head == "cuda" and (not index or index.isdigit())):
        return text
    raise ConfigError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps")


def resolve_device(name: str | None = AUTO) -> str:
    """A concrete device for ``name``; torch is imported only to answer ``auto``."""
    text = check_device(name or AUTO)
    if text != AUTO:
        return text
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
