"""Fine-tuning resurgence (Suriyakumar et al., arXiv 2410.08074, "Unstable Unlearning: The Hidden Risk of
Concept Resurgence in Diffusion Models"): plain fine-tuning of an erased model on benign data brings the
erased concept back. No prompt changes: the seed prompts are scored on checkpoints saved along the way,
which gives ASR against fine-tuning steps.

Benign data: the rows of a caption set (default the concept's first preserve set) that do not request
the concept, each drawn by the ORIGINAL model at a seed of its own (never a row's evaluation seed), as
8-bit images encoded by the VAE. The optimiser is diffusers' text-to-image fine-tuning
(examples/text_to_image: full UNet, AdamW, constant learning rate, gradient clipping, random flips, the
text encoder and VAE frozen); docs/attacks.md says where its values come from and what is not the paper's.
Each checkpoint is a diffusers folder named by the sha256 of its files, carrying the target's world
marker and guard, so ``trce-audit eval --model FOLDER`` reproduces a point of the curve.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..hashing import hash_tree
from ..models import tokens as tk
from ..models.folder import read_guard_record, read_marker, save_erased_pipeline, write_marker
from ..records import PromptRow
from . import diffusion as dm
from . import textual_inversion as ti
from .base import Attack, AttackConfig, AttackContext, AttackResult, Budget, adversarial_row

META_KEY = "finetuned"


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

    world_presets: ClassVar[dict[str, dict[str, Any]]] = {
        # measured in docs/attacks.md: 1e-5 moves the small pocket UNet too little in a CPU budget
        "pocket": {"steps": 200, "lr": 1e-4, "n_images": 32, "target_steps": 30, "train_batch_size": 4, "gradient_accumulation": 1},
    }


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
        import torch  # torch stays off the light path: listing attacks imports this module

        config, device = self.config, context.device
        marks = checkpoint_steps(config.budget.steps, config.checkpoints)
        rows = benign_rows(config, concept, context)
        dm.freeze(target_pipe, device)
        dm.freeze(original_pipe, device)
        posteriors = ti.training_posteriors(original_pipe, rows, steps=config.target_steps, device=device, generation=context.generation)
        ids = torch.tensor([tk.full_ids(target_pipe.tokenizer, tk.content_ids(target_pipe.tokenizer, r.text)) for r in rows], device=device)
        with torch.no_grad():
            hidden = tk.encode_ids(target_pipe.text_encoder, ids)
        before = {k: v.detach().to("cpu", copy=True) for k, v in target_pipe.unet.state_dict().items()}
        saved: list[dict[str, Any]] = []
        try:
            curve = _train(target_pipe, posteriors, hidden, config, marks, context, self.name,
                           lambda step: saved.append(save_checkpoint(target_pipe, step, context)))
        finally:  # the caller's pipeline leaves as it came
            target_pipe.unet.load_state_dict(before)
            dm.freeze(target_pipe, device)
        block = max(1, len(curve) // 20)
        stats.update(n_images=len(rows), caption_rows=len({r.text for r in rows}), loss_curve_block=block,
                     loss_curve=[sum(curve[i : i + block]) / len(curve[i : i + block]) for i in range(0, len(curve), block)])
        return {"steps": config.budget.steps, "checkpoints": saved, "loss": sum(curve[-block:]) / len(curve[-block:])}


def _train(pipe, posteriors, hidden, config: FinetuneConfig, marks: list[int], context: AttackContext, name: str, save) -> list[float]:
    """Fine-tune ``pipe.unet`` in place; calls ``save(step)`` at each of ``marks``; returns every step's loss."""
    import torch

    unet = pipe.unet
    unet.requires_grad_(True)
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay, eps=1e-8)
    generator = torch.Generator().manual_seed(config.seed)
    to_latents, n_train = dm.latents_of(pipe), dm.train_timesteps(pipe)
    queue: list[int] = []
    losses = []
    for step in range(1, config.budget.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(config.gradient_accumulation):
            index, x0, noise, t = ti.draw_batch(posteriors, queue, config.train_batch_size, config.flip_p, to_latents, n_train, generator)
            pred = unet(dm.add_noise(pipe, x0, noise, t), t, encoder_hidden_states=hidden[index.to(hidden.device)]).sample
            loss = torch.nn.functional.mse_loss(pred.float(), dm.training_target(pipe, x0, noise, t).float()) / config.gradient_accumulation
            loss.backward()
            total += loss.item()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        losses.append(total)
        context.report(step, config.budget.steps, name)
        if step in marks:
            unet.eval()
            save(step)
            unet.train()
    return losses


def save_checkpoint(pipe, step: int, context: AttackContext) -> dict[str, Any]:
    """Write the pipeline as a diffusers folder named by its content hash; {steps, path, sha256}."""
    root = context.artefact_dir or Path(tempfile.gettempdir()) / "trce-audit-finetuned"
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".step{step}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    guard = read_guard_record(context.model_dir) if context.model_dir is not None else None
    device = pipe.device
    pipe.to("cpu")
    parent = read_marker(context.model_dir) if context.model_dir is not None else {}
    save_erased_pipeline(pipe, staging, context.model_dir, parent.get("erasure") or {}, guard=guard)
    pipe.to(device)
    marker = read_marker(staging)  # the target's erasure record stays; the fine-tuning is added
    marker[META_KEY] = {"attack": FinetuneResurgence.name, "version": FinetuneResurgence.version, "steps": step}
    write_marker(staging, marker)
    sha = hash_tree(staging)
    final = root / sha[:32]
    if final.exists():  # the same weights saved by an earlier attempt
        shutil.rmtree(staging)
    else:
        os.replace(staging, final)  # a kill mid-write never leaves a half folder under the final name
    return {"steps": step, "path": str(final), "sha256": sha}
