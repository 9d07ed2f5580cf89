"""trce-audit: evaluation-first safety auditing for text-to-image diffusion models."""

__version__ = "0.1.0"
