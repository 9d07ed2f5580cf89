"""Low-rank adapters (LoRA) on a denoiser's linear layers, in-house (peft is not a dependency).

A wrapped ``nn.Linear`` computes ``base(x) + scale * up(down(x))`` with the base frozen, ``down`` (rank x
in) drawn N(0, 1/rank) and ``up`` (out x rank) zero, so a fresh adapter changes nothing: peft's
``init_lora_weights="gaussian"``, which diffusers' LoRA training scripts use, with ``scale = alpha / rank``.
The adapter's weights are float32 whatever the base's dtype (the scripts' ``cast_training_params``).

Modules are named as peft's ``target_modules`` name them: a key matches a module whose dotted name is the
key or ends with ``.key`` (``attn.to_k`` matches every block's ``attn.to_k``). A denoiser with adapters
becomes a plain one again by ``merge`` (the update folded into the base weights) or ``detach`` (the base
weights as they were); ``merged`` lends a plain copy of the merged model for saving it as a diffusers
folder and puts the adapters back. ``adapter_state``/``load_adapter_state`` read and write the adapters
under peft's key names (``<module>.lora_A.weight``, ``<module>.lora_B.weight``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

# Torch at the top: only the weights-tier code paths import this module.
import torch
from torch import nn

from ..errors import ConfigError

# The modules diffusers' LoRA training scripts adapt by default, per family (docs/attacks.md records
# the files and the commit they were read at).
SCRIPT_TARGETS: dict[str, tuple[str, ...]] = {
    # examples/text_to_image/train_text_to_image_lora.py and train_text_to_image_lora_sdxl.py
    "sd": ("to_k", "to_q", "to_v", "to_out.0"),
    "sdxl": ("to_k", "to_q", "to_v", "to_out.0"),
    # examples/dreambooth/train_dreambooth_lora_sd3.py
    "sd3": ("attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out",
            "attn.to_k", "attn.to_out.0", "attn.to_q", "attn.to_v"),
    # examples/dreambooth/train_dreambooth_lora_flux.py
    "flux": ("attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
             "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
             "ff_context.net.2"),
}


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``scale * up @ down``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator | None = None):
        super().__init__()
        if rank < 1:
            raise ConfigError(f"a LoRA rank must be at least 1, got {rank}")
        self.base = base
        base.requires_grad_(False)
        device = base.weight.device
        # Built on the meta device (nn.Linear's own initialisation would draw from the global RNG), then
        # given their weights: down drawn on the CPU (the same adapter on every device), up zero.
        self.down = nn.Linear(base.in_features, rank, bias=False, device="meta")
        self.up = nn.Linear(rank, base.out_features, bias=False, device="meta")
        down = torch.randn((rank, base.in_features), generator=generator, dtype=torch.float32) / rank
        self.down.weight = nn.Parameter(down.to(device))
        self.up.weight = nn.Parameter(torch.zeros((base.out_features, rank), dtype=torch.float32, device=device))
        self.rank, self.alpha, self.scale = rank, float(alpha), float(alpha) / rank

    def forward(self, x):
        update = self.up(self.down(x.to(self.down.weight.dtype))) * self.scale
        return self.base(x) + update.to(x.dtype)

    def delta(self):
        """The update of the base weight, (out x in) float32."""
        return self.scale * (self.up.weight @ self.down.weight)

    def merged_linear(self) -> nn.Linear:
        """A new ``nn.Linear`` computing what this wrapper computes: the base weight plus the update
        (in the base's dtype and device; the base is not touched)."""
        base = self.base
        plain = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        with torch.no_grad():
            weight = (base.weight.float() + self.delta().to(base.weight.device)).to(base.weight.dtype)
        plain.weight = nn.Parameter(weight, requires_grad=False)
        if base.bias is not None:
            plain.bias = nn.Parameter(base.bias.detach().clone(), requires_grad=False)
        plain.train(base.training)
        return plain


def target_names(module: nn.Module, keys: Sequence[str]) -> list[str]:
    """The names of ``module``'s linear layers that peft-style ``keys`` select, sorted; a one-line
    ConfigError when none is selected or a key selects a module that is not a linear layer."""
    wanted = [key.strip() for key in keys if key.strip()]
    found = []
    for name, sub in module.named_modules():
        if not any(name == key or name.endswith(f".{key}") for key in wanted):
            continue
        if not isinstance(sub, nn.Linear):
            raise ConfigError(f"LoRA target {name!r} is a {type(sub).__name__}, not a linear layer")
        found.append(name)
    if not found:
        raise ConfigError(f"the LoRA targets {', '.join(wanted) or '(none)'} name no module of this {type(module).__name__}")
    return sorted(found)


def _parent(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (module.get_submodule(path) if path else module), leaf


def attach(denoiser: nn.Module, module_names: Sequence[str], rank: int, alpha: float | None = None,
           generator: torch.Generator | None = None) -> dict[str, LoRALinear]:
    """Wrap each named ``nn.Linear`` of ``denoiser`` in a LoRALinear (``alpha`` defaults to ``rank``),
    in sorted name order (so ``generator`` draws the same adapters for the same names); returns them."""
    wrappers = {}
    for name in sorted(module_names):
        parent, leaf = _parent(denoiser, name)
        base = getattr(parent, leaf)
        if isinstance(base, LoRALinear):
            raise ConfigError(f"{name} already carries a LoRA adapter")
        if not isinstance(base, nn.Linear):
            raise ConfigError(f"LoRA target {name!r} is a {type(base).__name__}, not a linear layer")
        wrapper = LoRALinear(base, rank, rank if alpha is None else alpha, generator)
        setattr(parent, leaf, wrapper)
        wrappers[name] = wrapper
    return wrappers


def adapters(denoiser: nn.Module) -> dict[str, LoRALinear]:
    """The LoRA wrappers in ``denoiser`` by the name of the layer each wraps."""
    return {name: sub for name, sub in denoiser.named_modules() if isinstance(sub, LoRALinear)}


def parameters(denoiser: nn.Module) -> list[nn.Parameter]:
    """The adapters' trainable weights (down, up per wrapper, in name order)."""
    return [p for wrapper in adapters(denoiser).values() for p in (wrapper.down.weight, wrapper.up.weight)]


def _replace(denoiser: nn.Module, name: str, layer: nn.Module) -> None:
    parent, leaf = _parent(denoiser, name)
    setattr(parent, leaf, layer)


def merge(denoiser: nn.Module) -> list[str]:
    """Fold every adapter into its base weight and put the base back in its place: ``denoiser`` is
    plain again, with the update in its weights. Returns the merged layers' names."""
    found = adapters(denoiser)
    for name, wrapper in found.items():
        with torch.no_grad():
            weight = wrapper.base.weight
            weight.copy_((weight.float() + wrapper.delta().to(weight.device)).to(weight.dtype))
        _replace(denoiser, name, wrapper.base)
    return list(found)


def detach(denoiser: nn.Module) -> list[str]:
    """Drop every adapter: each base layer back in its place, its weights as they were (restore)."""
    found = adapters(denoiser)
    for name, wrapper in found.items():
        _replace(denoiser, name, wrapper.base)
    return list(found)


restore = detach


@contextmanager
def merged(denoiser: nn.Module) -> Iterator[nn.Module]:
    """Inside: ``denoiser`` is plain (no wrapper), each adapted layer a new ``nn.Linear`` holding the
    merged weight, so its state dict has the base model's keys. After: the adapters are back, the base
    weights untouched. Without adapters it changes nothing."""
    found = adapters(denoiser)
    try:
        for name, wrapper in found.items():
            _replace(denoiser, name, wrapper.merged_linear())
        yield denoiser
    finally:
        for name, wrapper in found.items():
            _replace(denoiser, name, wrapper)


def adapter_state(denoiser: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights under peft's key names: ``<layer>.lora_A.weight`` (down) and
    ``<layer>.lora_B.weight`` (up)."""
    state = {}
    for name, wrapper in adapters(denoiser).items():
        state[f"{name}.lora_A.weight"] = wrapper.down.weight.detach().clone()
        state[f"{name}.lora_B.weight"] = wrapper.up.weight.detach().clone()
    return state


def load_adapter_state(denoiser: nn.Module, state: dict[str, torch.Tensor], alpha: float | None = None) -> dict[str, LoRALinear]:
    """Attach adapters holding ``state`` (peft key names; the rank is read from the shapes, ``alpha``
    defaults to it) to the layers it names; returns them. ``merge`` then bakes them into the weights."""
    downs = {key[: -len(".lora_A.weight")]: value for key, value in state.items() if key.endswith(".lora_A.weight")}
    ups = {key[: -len(".lora_B.weight")]: value for key, value in state.items() if key.endswith(".lora_B.weight")}
    if not downs or set(downs) != set(ups):
        raise ConfigError("a LoRA state needs a lora_A and a lora_B weight for each layer it names")
    wrappers = {}
    for name in sorted(downs):
        rank = downs[name].shape[0]
        # a throwaway generator: the draw is overwritten, and the global RNG stays as it was
        wrappers.update(attach(denoiser, [name], rank, alpha, torch.Generator().manual_seed(0)))
        with torch.no_grad():
            wrappers[name].down.weight.copy_(downs[name])
            wrappers[name].up.weight.copy_(ups[name])
    return wrappers
