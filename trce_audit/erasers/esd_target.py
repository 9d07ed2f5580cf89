"""ESD's training target, which AdvUnlearn trains its text encoder towards too. Torch-free (it only
does arithmetic on what it is given), so that esd.py, which listing imports, can serve it."""

from __future__ import annotations


def negative_guidance_target(eps_c, eps_u, eta: float):
    """The paper's ESD target ε₀(∅) − η·(ε₀(c) − ε₀(∅)): η = 0 is the unconditional prediction, η = 1
    reflects the concept's guidance direction about it."""
    return eps_u - eta * (eps_c - eps_u)
