"""Protocol presets: the sampling settings a family's model card (or an erasure paper) evaluates with.

A preset fills the settings the user did not give (``--steps``, ``--height``/``--width``,
``--guidance``, the T5 length); its name is part of the run's identity, so two runs under different
presets are never confused. Sources are in docs/families.md, with where papers disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError


@dataclass(frozen=True)
class Preset:
    family: str
    size: int
    steps: int
    guidance: float
    source: str
    max_sequence_length: int | None = None  # T5 prompt length; None: no T5 or the pipeline's default

    def fills(self) -> dict[str, int | float]:
        """The generation settings the preset sets, by their GenerationSettings names."""
        filled = {"steps": self.steps, "height": self.size, "width": self.size, "guidance": self.guidance,
                  "max_sequence_length": self.max_sequence_length}
        return {key: value for key, value in filled.items() if value is not None}


PRESETS: dict[str, Preset] = {
    # stabilityai/stable-diffusion-xl-base-1.0: the diffusers pipeline defaults (50 steps, 5.0 guidance).
    "sdxl-base": Preset("sdxl", 1024, 50, 5.0, "stabilityai/stable-diffusion-xl-base-1.0 model card"),
    # SAFREE's SDXL runs: 512 px, 50 steps, 7.5 (jaehong31/SAFREE@b8b2c3fa run_nudity_sdxl.sh).
    "sdxl-safree": Preset("sdxl", 512, 50, 7.5, "SAFREE (arXiv 2410.12761), run_nudity_sdxl.sh"),
    "sd3-medium": Preset("sd3", 1024, 28, 7.0, "stabilityai/stable-diffusion-3-medium-diffusers model card", 256),
    "sd3.5-large": Preset("sd3", 1024, 28, 3.5, "stabilityai/stable-diffusion-3.5-large model card", 256),
    # Guidance 0: schnell is guidance-distilled and has no guidance embedding.
    "flux-schnell": Preset("flux", 1024, 4, 0.0, "black-forest-labs/FLUX.1-schnell model card", 256),
    "flux-dev": Preset("flux", 1024, 50, 3.5, "black-forest-labs/FLUX.1-dev model card", 512),
    # EraseAnything's FLUX.1-dev evaluation: 512 px, 28 steps (tomguluson92/EraseAnything@67d8c0bd).
    "flux-dev-eraseanything": Preset("flux", 512, 28, 3.5, "EraseAnything (arXiv 2412.20413)", 512),
}


def preset_named(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]
