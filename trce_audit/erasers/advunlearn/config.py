"""AdvUnlearn's typed config: the SD preset from the reference README's nudity command, the pocket preset we measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...errors import ConfigError
from ..config import EraserConfig


@dataclass(frozen=True)
class AdvUnlearnConfig(EraserConfig):
    prompt: str = ""  # the phrase erased (the reference's --prompt); "" = one of the concept's phrases per round
    iterations: int = 1000
    lr: float = 1e-5
    start_guidance: float = 3.0  # guidance of the sampling that produces x_t
    negative_guidance: float = 1.0  # η of ESD's target
    steps: int = 50  # DDIM steps of that sampling
    train_layers: tuple[int, ...] = ()  # transformer layers trained; () = all (text_encoder_full)
    component: str = "all"  # all, ffn or attn tensors of those layers
    norm_layer: bool = False  # also train the final layer norm (always trained with all layers and component all)
    caption_set: str = "coco-3k"  # the retain prompts (the reference's --dataset_retain)
    n_retain: int = 0  # 0 = the whole caption set
    retain_batch: int = 5
    retain_loss_w: float = 0.3
    attack_method: str = "pgd"
    attack_init: str = "random"  # random vocabulary tokens each round, or the "latest" round's prefix
    attack_step: int = 30
    attack_lr: float = 1e-3
    adv_prompt_num: int = 1  # k, the adversarial prefix tokens
    adv_prompt_update_step: int = 1  # a new phrase and attack round every this many iterations
    warmup_iter: int = 200
    seed: int = 0
    latent_size: int | None = None  # None: the UNet's sample_size
    block: int = 50  # iterations whose x_t are sampled together (memory, not results)

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "component": ("all", "ffn", "attn"), "attack_method": ("pgd", "fast_at"), "attack_init": ("random", "latest"),
    }

    @classmethod
    def for_world(cls, world: str = "sd") -> "AdvUnlearnConfig":
        if world == "sd":
            # README "Multi-step Attack" nudity command with the script's other defaults
            return cls(prompt="nudity")
        if world == "pocket":
            return cls(**POCKET_PRESET)
        raise ConfigError(f"unknown world {world!r}; expected sd or pocket")

    def validate(self) -> None:
        for key in ("iterations", "lr", "steps", "attack_step", "adv_prompt_num", "adv_prompt_update_step", "block"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key {key!r} must be positive, got {getattr(self, key)!r}")
        for key in ("retain_batch", "retain_loss_w", "attack_lr", "warmup_iter", "n_retain", "start_guidance", "negative_guidance"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        if any(layer < 0 for layer in self.train_layers):
            raise ConfigError(f"config key 'train_layers' takes layer indices >= 0, got {list(self.train_layers)}")
        if self.retain_batch and self.retain_loss_w and not self.caption_set:
            raise ConfigError("the retain regulariser needs a caption_set (or set retain_batch=0)")


# Measured on the shipped pocket model (docs/fidelity.md, AdvUnlearn). The schedule is cut to fit the
# 10-minute CPU budget (the reference's draws ~36 trajectories per iteration): fewer DDIM steps for x_t,
# 10-step attack rounds every 5 iterations; the from-scratch 96-dim encoder takes a larger step, and
# 10 retain captions per iteration at weight 3 are what kept preservation within 15 points of the base.
POCKET_PRESET: dict = dict(
    caption_set="pocket-general", iterations=300, warmup_iter=100, attack_step=10, adv_prompt_update_step=5,
    steps=20, lr=3e-4, retain_loss_w=3.0, retain_batch=10,
)
