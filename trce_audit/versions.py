"""Versions of the packages that can change a number: recorded with every run, compared across workers."""

from __future__ import annotations

from importlib import metadata

# Read from installed metadata, so recording them imports none of these packages.
TRACKED_PACKAGES = ("trce-audit", "torch", "diffusers", "transformers", "nudenet", "onnxruntime", "clean-fid")


def package_versions() -> dict[str, str]:
    """{distribution name: version} of the tracked packages that are installed."""
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
