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

import random
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
        from .plan import RetainDraws, encoder_parameters, plan_iterations
        from .train import Trainer

        config = self.config
        phrases = [config.prompt] if config.prompt else list(concept.keywords)
        if config.train_layers and max(config.train_layers) >= pipe.text_encoder.config.num_hidden_layers:
            raise ConfigError(f"train_layers {list(config.train_layers)}: the text encoder has {pipe.text_encoder.config.num_hidden_layers} layers")
        rng = random.Random(config.seed)
        use_retain = config.retain_batch > 0 and config.retain_loss_w > 0
        retain = RetainDraws(context.caption_list(config.caption_set, config.n_retain or None), rng) if use_retain else None
        plan = plan_iterations(config, phrases, retain, rng)
        params = encoder_parameters(pipe.text_encoder, config.train_layers, config.component, config.norm_layer)
        trainer = Trainer(pipe, config, [p for _, p in params], context, label=self.name)
        losses = trainer.run(plan)
        tenth = max(1, len(losses["advunlearn"]) // 10)
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        stats = {
            "prompts": phrases,
            "iterations": len(plan),
            "attack_rounds": trainer.rounds,
            "trainable_tensors": len(params),
            "trainable": [n for n, _ in params],
            "retain_prompts": len(retain.prompts) if retain else 0,
            "loss_first": mean(losses["advunlearn"][:tenth]),
            "loss_last": mean(losses["advunlearn"][-tenth:]),
            "attack_loss_first_round": mean(trainer.first_round),
            "attack_loss_last_round": mean(trainer.last_round),
        }
        return stats, losses
