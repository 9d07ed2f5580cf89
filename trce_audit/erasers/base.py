"""The eraser interface: a typed config, ``erase(pipe, concept, context) -> ErasureResult``.

An eraser edits the pipeline it is given in place and reports which tensors it changed; saving the
edited pipeline is the model folder's business (``models.folder.save_erased_pipeline``), so every eraser
writes the same layout and carries the world marker of its parent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from ..errors import ConfigError
from ..models.determinism import deterministic, where_it_ran
from .config import EraserConfig, build_config

if TYPE_CHECKING:
    from ..data.concepts import Concept

ProgressFn = Callable[[str, int, int], None]  # (stage description, done, total)
CaptionsFn = Callable[[str, int | None], Sequence[str]]  # (caption-set name, limit) -> captions
CaptionSource = CaptionsFn | Sequence[str]  # a plain list serves every caption-set name (tests)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class EraseContext:
    """What an eraser may use besides the pipeline: where to cache, which device, how to report."""

    cache_dir: Path
    device: str = "cpu"
    progress: ProgressFn = _no_progress
    captions: CaptionSource | None = None
    model_fingerprint: str | None = None
    world: str = "sd"
    stages: tuple[int, ...] | None = None
    batch_size: int = 8  # runtime only: how many samples go through the UNet at once

    def caption_list(self, name: str, limit: int | None) -> list[str]:
        if self.captions is None:
            raise ConfigError(f"this eraser needs the caption set {name!r} for prior preservation but none was provided")
        found = self.captions if isinstance(self.captions, (list, tuple)) else self.captions(name, limit)
        captions = [str(c) for c in found]
        if not captions:
            raise ConfigError(f"caption set {name!r} is empty")
        return captions[:limit] if limit else captions


@dataclass
class ErasureResult:
    changed_params: list[str]
    stats: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    guard: dict[str, Any] | None = None  # an inference-time eraser's guard record (name, version, config)
    # Where it ran, as far as it decides the bits: torch's thread count (it splits the reductions) and
    # the ops that had no deterministic kernel (none on a CPU); never part of the erase's identity.
    runtime: dict[str, Any] = field(default_factory=dict)


class Eraser:
    """Base class. Subclasses set ``name``, ``version``, ``Config`` and implement ``erase``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    # Model families (models/families) the eraser edits; any other is refused in one line before loading.
    families: ClassVar[tuple[str, ...]] = ("sd",)
    Config: ClassVar[type[EraserConfig]] = EraserConfig
    description: ClassVar[str] = ""
    default_stages: ClassVar[tuple[int, ...] | None] = None  # erasers with stages run these unless told

    def __init__(self, config: EraserConfig | None = None):
        self.config = config if config is not None else self.Config.for_world("sd")
        if not isinstance(self.config, self.Config):
            raise ConfigError(f"{self.name} expects a {self.Config.__qualname__}, got {type(self.config).__qualname__}")

    @classmethod
    def make_config(cls, *, world: str = "sd", config_file=None, overrides=None, concept: str | None = None,
                    family: str = "sd") -> EraserConfig:
        return build_config(cls.Config, world=world, config_file=config_file, overrides=overrides, section=cls.name,
                            concept=concept, family=family)

    @classmethod
    def check_stages(cls, stages: tuple[int, ...] | None) -> None:
        if stages is not None:
            raise ConfigError(f"eraser {cls.name!r} has no stages; --stages applies to trce only")

    @classmethod
    def uses_seed(cls, stages: tuple[int, ...] | None = None) -> bool:
        """Whether the config's ``seed`` changes the weights: erasers that train or sample (ESD, TRCE's
        stage 2, MACE, AdvUnlearn, SPEED's clustering) do; closed forms and guards have no seed."""
        return "seed" in {f.name for f in dataclasses.fields(cls.Config)}

    def erase(self, pipe, concept: "Concept", *, context: EraseContext) -> ErasureResult:
        """Edit ``pipe`` in place; the result names every tensor that actually changed."""
        import torch

        if not concept.pairs:
            raise ConfigError(f"concept {concept.name!r} has no (malicious, safe) pairs to erase")
        before = snapshot_parameters(pipe)
        with torch.random.fork_rng(devices=[]), deterministic() as determinism:
            stats, losses = self.apply(pipe, concept, context)
        guard = self.guard_record(concept, context)
        runtime = {**where_it_ran(), **determinism.as_dict()}
        return ErasureResult(changed_params=changed_parameters(pipe, before), stats=stats, losses=losses, guard=guard, runtime=runtime)

    def guard_record(self, concept: "Concept", context: EraseContext) -> dict[str, Any] | None:
        """Inference-time erasers return the guard the saved folder carries; weight editors none."""
        return None

    def apply(self, pipe, concept: "Concept", context: EraseContext) -> tuple[dict[str, Any], dict[str, list[float]]]:
        """The edit itself: returns (stats, loss curves)."""
        raise NotImplementedError


def edited_modules(pipe) -> list[tuple[str, Any]]:
    """The components an eraser may edit: the denoiser (UNet or transformer) and the first text encoder
    (AdvUnlearn's); the other encoders (SDXL's second CLIP, T5) no eraser touches."""
    named = [(name, getattr(pipe, name, None)) for name in ("unet", "transformer", "text_encoder")]
    return [(name, module) for name, module in named if module is not None]


def snapshot_parameters(pipe) -> dict[str, Any]:
    """CPU copies of every tensor an eraser may edit, to tell afterwards which ones an edit changed."""
    tensors = {}
    for prefix, module in edited_modules(pipe):
        for key, value in module.state_dict().items():
            tensors[f"{prefix}.{key}"] = value.detach().to("cpu", copy=True)
    return tensors


def changed_parameters(pipe, before: dict[str, Any]) -> list[str]:
    import torch

    changed = []
    for prefix, module in edited_modules(pipe):
        for key, value in module.state_dict().items():
            name = f"{prefix}.{key}"
            if not torch.equal(before[name], value.detach().to("cpu")):
                changed.append(name)
    return changed
