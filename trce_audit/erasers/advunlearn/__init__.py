"""AdvUnlearn (Zhang et al., NeurIPS 2024, arXiv 2405.15234): robust erasure by adversarial training of
the text encoder. Each iteration (after ``warmup_iter`` plain ones) an attack finds a soft prompt prefix
that makes the current encoder bring the concept back (``attack``); the encoder is then
trained with ESD's loss on that adversarial prompt,
    ‖ε(x_t, E(adv)) − (ε₀(x_t, ∅) − η·(ε₀(x_t, c) − ε₀(x_t, ∅)))‖²,
plus ``retain_loss_w`` times the utility-retaining regulariser ‖ε(x_r, E(r)) − ε₀(x_r, E₀(r))‖² over a
batch of retain prompts r (the reference's ``--retain_train reg``). The UNet is never trained: the
artefact is the pipeline with the erased text encoder. Follows ``train-scripts/AdvUnlearn.py`` and
``utils/get_loss.py`` (``get_train_loss_retain``) of github.com/OPTML-Group/AdvUnlearn (docs/fidelity.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ...errors import ConfigError
from ..base import EraseContext, Eraser
from .config import AdvUnlearnConfig

__all__ = ["AdvUnlearn", "AdvUnlearnConfig"]

if TYPE_CHECKING:
    from ...data.concepts import Concept


class AdvUnlearn(Eraser):
    name: ClassVar[str] = "advunlearn"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[AdvUnlearnConfig]] = AdvUnlearnConfig
    description: ClassVar[str] = "AdvUnlearn: adversarial training of the text encoder with a utility-retaining regulariser"

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        from .train import train_text_encoder  # torch: listing and validating AdvUnlearn imports none

        config = self.config
        if config.train_layers and max(config.train_layers) >= pipe.text_encoder.config.num_hidden_layers:
            raise ConfigError(f"train_layers {list(config.train_layers)}: the text encoder has {pipe.text_encoder.config.num_hidden_layers} layers")
        return train_text_encoder(pipe, concept, config, context, label=self.name)
