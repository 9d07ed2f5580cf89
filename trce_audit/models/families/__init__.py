"""Model families: the one place that knows how each text-to-image architecture works.

A family (``sd`` for Stable Diffusion 1.x/2.x, ``sdxl``, ``sd3``, ``flux``) is read from a pipeline
folder's ``model_index.json`` (its ``_class_name``) without loading weights; its behaviour (text
encoding, denoiser call, scheduling, latents, the modules erasers edit) lives in one module per family,
loaded through the plugin registry (kind ``family``) so that reading a folder's family imports no torch.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ... import registry
from ...errors import ConfigError
from ..folder import world_of

BUILTIN: dict[str, str] = {
    "sd": "trce_audit.models.families.sd:StableDiffusion",
    "sdxl": "trce_audit.models.families.sdxl:StableDiffusionXL",
    "sd3": "trce_audit.models.families.sd3:StableDiffusion3",
    "flux": "trce_audit.models.families.flux:Flux",
}
# model_index.json `_class_name` -> family, for the built-ins (a plugin family names its own classes).
PIPELINE_FAMILIES: dict[str, str] = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
}
PIPELINE_CLASS: dict[str, str] = {family: class_name for class_name, family in PIPELINE_FAMILIES.items()}
# The denoiser folder whose sample_size sets the default image side; FLUX has none (its pipeline
# defaults to 128 latent rows, 1024 px at the VAE's factor 8).
DENOISER_FOLDER = {"sd": "unet", "sdxl": "unet", "sd3": "transformer", "flux": None}
FLUX_SAMPLE_SIZE = 128  # FluxPipeline.default_sample_size: latent rows before packing
# The pipeline attribute holding the T5 length a loaded folder declares (own_sampling; set by
# models/resolve.load_pipeline, read by families/flux.py's declared_t5_length).
DECLARED_T5_LENGTH = "trce_max_sequence_length"


def read_config(folder: Path, component: str, file: str = "config.json") -> dict:
    try:
        config = json.loads((Path(folder) / component / file).read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError(f"cannot read the {component} config of {folder}: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"the {component} config of {folder} is not a JSON object")
    return config


def own_sampling(folder: Path) -> tuple[int, int] | None:
    """(image side, T5 length) of a pocket-world FLUX folder (pocket-flux and the models erased from it),
    read from the folder; None for every other folder, real FLUX models included (1,024 px, T5 512).

    FluxPipeline fixes its native size (128 latent rows) and T5 length (512) in code, not in a config.
    pocket-flux is trained on the world's 32 px renders with prompts padded to 48 T5 tokens, and FLUX
    attends to every padding token, so it is sampled only there. The folder records both: its VAE's
    sample_size is the world's image side, tokenizer_2's model_max_length the T5 length it was trained
    at (pocket/flux_builders.save_flux_pipeline); a folder saved from the loaded pipeline keeps both."""
    if family_name(folder) != "flux" or world_of(folder) != "pocket":
        return None
    side = read_config(folder, "vae").get("sample_size")
    length = read_config(folder, "tokenizer_2", "tokenizer_config.json").get("model_max_length")
    for name, value in (("vae's sample_size", side), ("tokenizer_2's model_max_length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{folder}: a pocket-world FLUX folder needs a positive integer {name}, got {repr(value)[:40]}")
    return side, length


def family_name(folder: Path) -> str:
    """The family of a pipeline folder, from ``model_index.json``; an unknown one is a one-line error."""
    try:
        index = json.loads((Path(folder) / "model_index.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError(f"cannot read {Path(folder) / 'model_index.json'}: {exc}") from None
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if not isinstance(class_name, str):  # a list or a number names no class (and a list is no dict key)
        class_name = None
    if class_name in PIPELINE_FAMILIES:
        return PIPELINE_FAMILIES[class_name]
    for name in registry.names("family"):
        if name not in BUILTIN and class_name in load_family(name).pipeline_classes:
            return name
    supported = ", ".join(f"{f} ({c})" for c, f in PIPELINE_FAMILIES.items())
    raise ConfigError(f"{folder} holds a {class_name or 'pipeline with no _class_name'}; supported families: {supported}")


def require_family(folder: Path, supported: tuple[str, ...], what: str, hint: str = "") -> str:
    """The folder's family when ``what`` (e.g. "the uce eraser") supports it; a one-line error otherwise,
    ending with ``hint`` (how else it could run) when there is one."""
    family = family_name(folder)
    if family not in supported:
        raise ConfigError(f"{what} runs on {', '.join(supported)} models; {folder} is a {family} model{hint}")
    return family


def pipeline_family(pipe) -> str:
    """The family of a loaded pipeline, from its class (a pipeline built in code has no folder)."""
    class_name = type(pipe).__name__
    if class_name in PIPELINE_FAMILIES:
        return PIPELINE_FAMILIES[class_name]
    for name in registry.names("family"):
        if name not in BUILTIN and class_name in load_family(name).pipeline_classes:
            return name
    raise ConfigError(f"a {class_name} is not a supported pipeline; supported: {', '.join(PIPELINE_FAMILIES)}")


@functools.lru_cache(maxsize=None)
def load_family(name: str):
    """The family object (imports torch): how to encode, denoise, schedule and decode. One per name and
    process: a family holds no state, and the attacks' training steps ask for it every micro-batch
    (resolving a plugin reads the installed entry points, about 10 ms)."""
    return registry.load("family", name)()


def default_size(folder: Path) -> int:
    """Image side a pipeline renders when the user names none, as diffusers' pipeline defaults it."""
    family = family_name(folder)
    own = own_sampling(folder)
    if own is not None:
        return own[0]
    channels = read_config(folder, "vae").get("block_out_channels", [0] * 4)
    component = DENOISER_FOLDER.get(family, "transformer")
    sample = read_config(folder, component).get("sample_size", 64) if component else FLUX_SAMPLE_SIZE
    if isinstance(sample, (list, tuple)) and sample:
        sample = sample[0]
    if isinstance(sample, float) and sample.is_integer():
        sample = int(sample)
    if not isinstance(channels, list) or not channels or isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ConfigError(f"{folder}: the vae's block_out_channels and the {component}'s sample_size do not give an image size "
                          f"(got {str(channels)[:40]} and {str(sample)[:40]}); pass --height and --width")
    return sample * 2 ** (len(channels) - 1)
