"""ESD (Gandikota et al., ICCV 2023): fine-tune the UNet so that ε(x_t, c) follows the negatively
guided prediction ε₀(x_t, ∅) − η·(ε₀(x_t, c) − ε₀(x_t, ∅)) of the frozen original model, on latents
x_t that the original model samples for c (classifier-free guidance, DDIM) up to a random step.

η is the paper's (and the original CompVis script's): η = 1 already pushes away from the concept.
``esd_sd.py`` writes the target as ε₀(c) − η'·(ε₀(c) − ε₀(∅)), so its η' = η + 1 (its default 2 is
the paper's 1); η = 0 maps the concept onto the unconditional prediction.

``esd-x`` trains the cross-attention layers (attn2), ``esd-u`` every Linear/Conv2d outside them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from ..errors import ConfigError
from .base import EraseContext, Eraser
from .config import EraserConfig

if TYPE_CHECKING:
    from ..data.concepts import Concept


@dataclass(frozen=True)
class ESDConfig(EraserConfig):
    lr: float = 1e-5
    iterations: int = 1000
    negative_guidance: float = 1.0
    start_guidance: float = 3.0  # guidance of the sampling that produces x_t
    steps: int = 50
    prompt: Optional[str] = None  # None: the concept's malicious phrases, one per iteration in turn
    seed: int = 0
    latent_size: Optional[int] = None  # None: the UNet's sample_size

    @classmethod
    def for_world(cls, world: str = "sd") -> "ESDConfig":
        if world == "pocket":
            # a tiny UNet trained from scratch takes a larger step; ESD-x generalises from its bare
            # concept phrases to whole sentences slowly, so it runs longer (docs/fidelity.md, "Pocket presets")
            return cls(lr=1e-3, iterations=2000)
        if world != "sd":
            raise ConfigError(f"unknown world {world!r}; expected sd or pocket")
        return cls()

    def validate(self) -> None:
        for key in ("lr", "iterations", "steps"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key {key!r} must be positive, got {getattr(self, key)!r}")
        if self.negative_guidance < 0 or self.start_guidance < 0:
            raise ConfigError("config keys 'negative_guidance' and 'start_guidance' must be >= 0")


@dataclass(frozen=True)
class ESDUConfig(ESDConfig):
    @classmethod
    def for_world(cls, world: str = "sd") -> "ESDUConfig":
        if world == "pocket":
            # the sweep in docs/fidelity.md: more steps or a larger lr cost preservation faster than they erase
            return cls(lr=3e-4, iterations=300)
        return super().for_world(world)


def negative_guidance_target(eps_c, eps_u, eta: float):
    """The paper's ESD target ε₀(∅) − η·(ε₀(c) − ε₀(∅)): η = 0 is the unconditional prediction, η = 1
    reflects the concept's guidance direction about it."""
    return eps_u - eta * (eps_c - eps_u)


def is_linear_or_conv(module) -> bool:
    import torch

    return isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))


# The CompVis script's noxattn set skips `out.` (norm + output conv) and `time_embed`; in diffusers
# names those are conv_norm_out/conv_out and time_embedding (esd_sd.py dropped the exclusion).
NOXATTN_EXCLUDED_PREFIXES = ("conv_out", "conv_norm_out", "time_embedding")


def esd_parameters(unet, method: str) -> list[tuple[str, Any]]:
    """Parameters of Linear/Conv2d modules inside (xattn) or outside (noxattn) the cross-attention;
    noxattn leaves out the output and time-embedding layers, as the original script does."""
    chosen = []
    unet.requires_grad_(False)
    for name, module in unet.named_modules():
        if not is_linear_or_conv(module):
            continue
        inside = "attn2" in name
        if method == "noxattn" and name.startswith(NOXATTN_EXCLUDED_PREFIXES):
            continue
        if (method == "xattn") == inside:
            for leaf, param in module.named_parameters(recurse=False):
                param.requires_grad_(True)
                chosen.append((f"{name}.{leaf}", param))
    return chosen


class _ESD(Eraser):
    version: ClassVar[str] = "2"  # 2: η as in the paper, target ε₀(∅) − η·(ε₀(c) − ε₀(∅))
    Config: ClassVar[type[ESDConfig]] = ESDConfig
    method: ClassVar[str] = ""

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        import torch

        from .common import ddim_scheduler, encode_prompts, frozen_copy, latent_shape, sample_states

        config = self.config
        device = context.device
        prompts = [config.prompt] if config.prompt else concept.keywords
        emb = encode_prompts(pipe, prompts, device)
        null = encode_prompts(pipe, [""], device)
        scheduler = ddim_scheduler(pipe, config.steps)
        base = frozen_copy(pipe.unet).to(device)
        shape = latent_shape(pipe, config.latent_size)
        rng = random.Random(config.seed)
        # (phrase, step to stop at, noise seed) per iteration. The frozen model samples x_t, so every
        # x_t can be drawn up front in batches (sorted by stop step so a batch stops together).
        plan = [(it % len(prompts), rng.randint(0, config.steps - 1), rng.randrange(2**31)) for it in range(config.iterations)]
        order = sorted(range(len(plan)), key=lambda i: plan[i][1])
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(plan[i][2])) for i in order]).to(device)
        states = sample_states(
            base, scheduler, emb[[plan[i][0] for i in order]], null, config.start_guidance, noise,
            [{plan[i][1]} for i in order], context.batch_size,
            lambda done: context.progress(f"{self.name}: sampling x_t", done, len(order)),
        )
        latents = {i: states[(j, plan[i][1])] for j, i in enumerate(order)}
        unet = pipe.unet
        params = [p for _, p in esd_parameters(unet, self.method)]
        unet.train()
        optimizer = torch.optim.Adam(params, lr=config.lr)
        losses: list[float] = []
        for it, (k, stop, _) in enumerate(plan):
            cond = emb[k : k + 1]
            x = latents[it][None].to(device)
            t = scheduler.timesteps[stop]
            with torch.no_grad():
                both = base(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([cond, null])).sample
                eps_c, eps_u = both.chunk(2)
                target = negative_guidance_target(eps_c, eps_u, config.negative_guidance)
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(unet(x, t, encoder_hidden_states=cond).sample, target)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            context.progress(f"{self.name}: fine-tuning", it + 1, config.iterations)
        unet.eval()
        unet.requires_grad_(False)
        tenth = max(1, len(losses) // 10)
        stats = {
            "method": self.method,
            "prompts": prompts,
            "iterations": len(losses),
            "trainable_tensors": len(params),
            "loss_first": sum(losses[:tenth]) / tenth,
            "loss_last": sum(losses[-tenth:]) / tenth,
        }
        return stats, {"esd": losses}


class ESDX(_ESD):
    name: ClassVar[str] = "esd-x"
    method: ClassVar[str] = "xattn"
    description: ClassVar[str] = "ESD-x: erase by negative guidance, fine-tuning cross-attention only"


class ESDU(_ESD):
    name: ClassVar[str] = "esd-u"
    version: ClassVar[str] = "3"  # 3: conv_out and time_embedding no longer trained (the original's set)
    Config: ClassVar[type[ESDConfig]] = ESDUConfig
    method: ClassVar[str] = "noxattn"
    description: ClassVar[str] = "ESD-u: erase by negative guidance, fine-tuning all layers but cross-attention"
