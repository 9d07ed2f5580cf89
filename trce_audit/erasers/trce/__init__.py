"""TRCE (Chen et al., ICCV 2025, arXiv 2503.07389): a closed-form cross-attention edit (stage 1) and
an early-step contrastive fine-tune (stage 2). Torch is imported only when ``apply`` runs
(``erase.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ...errors import ConfigError
from ...models.families import pipeline_family
from ..base import EraseContext, Eraser
from .config import TRCEConfig

if TYPE_CHECKING:
    from ...data.concepts import Concept

STAGES = (1, 2)


class TRCE(Eraser):
    name: ClassVar[str] = "trce"
    version: ClassVar[str] = "3"  # 2: preserved captions leave out rows that ask for the erased concept; 3: reference-mode timesteps
    Config: ClassVar[type[TRCEConfig]] = TRCEConfig
    description: ClassVar[str] = "TRCE: closed-form cross-attention refinement + early-step contrastive fine-tuning"
    default_stages: ClassVar[tuple[int, ...]] = STAGES
    # flux: both stages are an extension of ours (stage1_flux.py; stage 2 through the family seam)
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl", "flux")

    @classmethod
    def check_stages(cls, stages: tuple[int, ...] | None) -> None:
        if stages is None:
            return
        if not stages or any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
            raise ConfigError(f"--stages must be 1, 2 or 1,2 for trce, got {','.join(map(str, stages)) or 'nothing'}")

    @classmethod
    def uses_seed(cls, stages: tuple[int, ...] | None = None) -> bool:
        return 2 in (stages or STAGES)  # stage 1 is a closed form; only stage 2 draws

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        from .erase import run_stages  # torch: listing and validating TRCE imports none

        stages = tuple(sorted(context.stages or STAGES))
        self.check_stages(stages)
        if self.config.reference and pipeline_family(pipe) == "flux":  # before stage 1 or 2 spends any time
            raise ConfigError("trce's reference mode reproduces the SD 1.4 code; on flux use mode=default")
        return run_stages(pipe, concept, self.config, context, stages)
