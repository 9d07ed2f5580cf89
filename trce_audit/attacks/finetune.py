"""Fine-tuning resurgence (Suriyakumar et al., arXiv 2410.08074, "Unstable Unlearning: The Hidden Risk of
Concept Resurgence in Diffusion Models"): plain fine-tuning of an erased model on benign data brings the
erased concept back. No prompt changes: the seed prompts are scored on checkpoints saved along the way,
which gives ASR against fine-tuning steps.

Benign data: the rows of a caption set (default the concept's first preserve set) that do not request
the concept, each drawn by the ORIGINAL model at a seed of its own (never a row's evaluation seed), as
8-bit images encoded by the VAE. The optimiser is diffusers' text-to-image fine-tuning
(examples/text_to_image: full UNet, AdamW, constant learning rate, gradient clipping, random flips, the
text encoder and VAE frozen); on SDXL, SD3 and FLUX it trains LoRA adapters on the denoiser instead
(diffusers' LoRA training scripts' modules), which is what fits a 12-billion-parameter FLUX on one GPU.
docs/attacks.md says where its values come from and what is not the paper's. Each checkpoint is a
diffusers folder (any LoRA merged into the weights) named by the sha256 of its files, carrying the
target's world marker and guard, so ``trce-audit eval --model FOLDER`` reproduces a point of the curve.
The training itself is in finetune_training.py (torch at its top), imported when a run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager

from ..errors import ConfigError
from ..hashing import hash_tree
from ..models.folder import read_guard_record, read_marker, save_erased_pipeline, write_marker
from ..records import PromptRow
from . import diffusion as dm
from . import textual_inversion as ti
from .base import Attack, AttackConfig, AttackContext, AttackResult, Budget, adversarial_row

META_KEY = "finetuned"
# lora_rank=none resolves per family: SD keeps the full fine-tune its results were measured with; the
# other families train LoRA adapters of this rank (docs/attacks.md: why 16).
FAMILY_LORA_RANK: dict[str, int] = {"sd": 0}
DEFAULT_LORA_RANK = 16


@dataclass
class FinetuneBudget(Budget):
    steps: int = 1000  # optimiser steps (the SD default; docs/attacks.md: the paper's count is not known here)


@dataclass
class FinetuneConfig(AttackConfig):
    budget: FinetuneBudget = field(default_factory=FinetuneBudget)
    lr: float = 1e-5  # diffusers examples/text_to_image README recipe: --learning_rate=1e-05 ...
    train_batch_size: int = 1  # ... --train_batch_size=1
    gradient_accumulation: int = 4  # ... --gradient_accumulation_steps=4
    max_grad_norm: float = 1.0  # ... --max_grad_norm=1 (0 = no clipping)
    weight_decay: float = 1e-2  # train_text_to_image.py --adam_weight_decay default
    flip_p: float = 0.5  # --random_flip
    n_images: int = 100  # benign (caption, image) pairs
    captions: str = ""  # caption set of the benign data; "" = the concept's first preserve set; "pairs" = its safe prompts
    checkpoints: int = 4  # points of the ASR-against-steps curve, evenly spaced, the last at `steps`
    target_steps: int = 50  # the original model's sampling steps for the benign images
    # LoRA adapters on the denoiser (models/lora.py), docs/attacks.md. none: the family's default
    # (FAMILY_LORA_RANK: SD 0, the others 16); 0: the whole denoiser is fine-tuned; N: adapters of rank N.
    lora_rank: int | None = None
    lora_alpha: float | None = None  # none: the rank (scale 1), as diffusers' LoRA scripts set it
    lora_targets: tuple[str, ...] | None = None  # peft-style module keys; none: lora.SCRIPT_TARGETS[family]
    lora_lr: float = 1e-4  # the LoRA scripts' --learning_rate default (`lr` is the full fine-tune's)
    # FLUX.1-dev's guidance embedding while training: train_dreambooth_lora_flux.py --guidance_scale
    # default; a model without the embedding (schnell, every other family) ignores it.
    embedded_guidance: float = 3.5
    # Activation checkpointing of the denoiser (memory for time; none: on for sd3 and flux).
    gradient_checkpointing: bool | None = None

    world_presets: ClassVar[dict[str, dict[str, Any]]] = {
        # measured in docs/attacks.md: 1e-5 moves the small pocket UNet too little in a CPU budget
        "pocket": {"steps": 200, "lr": 1e-4, "n_images": 32, "target_steps": 30, "train_batch_size": 4, "gradient_accumulation": 1},
    }
    runtime_fields: ClassVar[tuple[str, ...]] = ("gradient_checkpointing",)
    # Fields added after runs were first stored: at their defaults they stay out of the run identity, so
    # every run stored before them keeps its name.
    added_fields: ClassVar[tuple[str, ...]] = ("lora_rank", "lora_alpha", "lora_targets", "lora_lr", "embedded_guidance")

    def identity_dict(self) -> dict[str, Any]:
        data = super().identity_dict()
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {k: v for k, v in data.items() if not (k in self.added_fields and v == defaults[k])}

    def rank_for(self, family: str) -> int:
        """The LoRA rank on a model of ``family`` (0: full fine-tuning)."""
        rank = FAMILY_LORA_RANK.get(family, DEFAULT_LORA_RANK) if self.lora_rank is None else self.lora_rank
        if rank < 0:
            raise ConfigError(f"lora_rank must be none, 0 (full fine-tuning) or a positive rank, got {rank}")
        if rank and self.lora_alpha is not None and self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha must be positive, got {self.lora_alpha}")
        return rank


def checkpoint_steps(steps: int, points: int) -> list[int]:
    """``points`` step counts spread evenly over (0, steps], the last one ``steps``."""
    if steps < 1 or points < 1:
        raise ConfigError(f"finetune-resurgence needs steps >= 1 and checkpoints >= 1, got {steps} and {points}")
    count = min(points, steps)
    return sorted({max(1, round(steps * k / count)) for k in range(1, count + 1)})


def benign_rows(config: FinetuneConfig, concept: Any, context: AttackContext) -> list[PromptRow]:
    """``n_images`` benign rows cycled over the caption set, each with a generation seed of its own."""
    if config.captions == "pairs":
        source = [PromptRow(safe, 0, 7.5) for _, safe in concept.pairs]
    else:
        name = config.captions or (concept.preserve_sets[0] if concept.preserve_sets else "")
        if not name:
            raise ConfigError(f"concept {concept.name!r} names no preserve set; pass --set captions=SET (or captions=pairs)")
        if context.benign_rows is None:
            raise ConfigError(f"no caption source for {name!r} here; pass --set captions=pairs")
        source = context.benign_rows(name)
    if not source:
        raise ConfigError(f"caption set {config.captions or name!r} has no row that leaves out concept {concept.name!r}")
    return ti.training_rows(source, config.n_images, salt=FinetuneResurgence.name)


class FinetuneResurgence(Attack):
    name = "finetune-resurgence"
    version = "1"
    tier: ClassVar[str] = "weights"
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl", "sd3", "flux")
    Config = FinetuneConfig
    paper_budget = {"steps": 1000}
    needs_original = True

    def run(self, target_pipe, concept, seed_rows, *, original_pipe=None, context=None, indices=None) -> AttackResult:
        context = context or AttackContext()
        order = self.seed_indices(seed_rows, indices)
        earlier = next((row.meta[META_KEY] for row in context.finished.values() if META_KEY in (row.meta or {})), None)
        stats: dict[str, Any] = {"original_is_target": original_pipe is None}
        if earlier is None and not order:
            return AttackResult([], stats)
        if earlier is not None:  # an interrupted attempt already fine-tuned: every seed gets its checkpoints
            entry, stats["reused_checkpoints"] = earlier, True
        else:
            entry = self._finetune(target_pipe, original_pipe or target_pipe, concept, context, stats)
        rows = [context.seed_done(i, adversarial_row(seed_rows[i], seed_rows[i].text, self.name, {META_KEY: entry, "loss": entry["loss"]}))
                for i in order]
        return AttackResult(rows, stats)

    def _finetune(self, target_pipe, original_pipe, concept, context, stats) -> dict[str, Any]:
        from . import finetune_training  # torch at its top: listing attacks imports this module only

        config = self.config
        marks = checkpoint_steps(config.budget.steps, config.checkpoints)
        rows = benign_rows(config, concept, context)
        stamp = {"attack": self.name, "version": self.version}
        saved: list[dict[str, Any]] = []

        def save(step: int, plain: Callable[[], ContextManager[Any]], extra: dict[str, Any]) -> None:
            saved.append(save_checkpoint(target_pipe, step, context, plain=plain, stamp={**stamp, **extra}))

        curve = finetune_training.fine_tune(target_pipe, original_pipe, rows, config, marks, context, self.name, save, stats)
        block = max(1, len(curve) // 20)
        stats.update(n_images=len(rows), caption_rows=len({r.text for r in rows}), loss_curve_block=block,
                     loss_curve=[sum(curve[i : i + block]) / len(curve[i : i + block]) for i in range(0, len(curve), block)])
        return {"steps": config.budget.steps, "checkpoints": saved, "loss": sum(curve[-block:]) / len(curve[-block:])}


def save_checkpoint(pipe, step: int, context: AttackContext, plain: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                    stamp: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the pipeline as a diffusers folder named by its content hash; {steps, path, sha256}.

    The pipeline is saved from the CPU, inside ``plain()`` (which folds LoRA adapters into plain layers
    for the save); each of its modules goes back to the device it was on. ``stamp`` is the ``finetuned``
    record of the folder's marker (the attack, its version, and e.g. the LoRA settings); ``steps`` is added."""
    root = context.artefact_dir or Path(tempfile.gettempdir()) / "trce-audit-finetuned"
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".step{step}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    guard = read_guard_record(context.model_dir) if context.model_dir is not None else None
    modules = {id(part) for part in dm.frozen_parts(pipe)}
    placement = {name: part.device for name, part in pipe.components.items() if id(part) in modules}
    pipe.to("cpu")
    parent = read_marker(context.model_dir) if context.model_dir is not None else {}
    with plain():
        save_erased_pipeline(pipe, staging, context.model_dir, parent.get("erasure") or {}, guard=guard)
    for name, device in placement.items():  # a frozen part parked on the CPU stays there
        getattr(pipe, name).to(device)
    marker = read_marker(staging)  # the target's erasure record stays; the fine-tuning is added
    marker[META_KEY] = {**(stamp or {"attack": FinetuneResurgence.name, "version": FinetuneResurgence.version}), "steps": step}
    write_marker(staging, marker)
    sha = hash_tree(staging)
    final = root / sha[:32]
    if final.exists():  # the same weights saved by an earlier attempt
        shutil.rmtree(staging)
    else:
        os.replace(staging, final)  # a kill mid-write never leaves a half folder under the final name
    return {"steps": step, "path": str(final), "sha256": sha}
