"""TRCE stage 2: fine-tune attn1.* and attn2.to_q (FLUX, an extension of ours: the joint blocks' text
attention projections) so early denoising steps of malicious prompts move towards the safe prediction.

Per iteration, on one latent x_t of a malicious trajectory (sampled by the original model):
    f_safe   = ε₀(x,t,c_safe) + g·(ε₀(x,t,c_safe) − ε₀(x,t,∅))
    f_unsafe = ε₀(x,t,c_mal)  + g·(ε₀(x,t,c_mal)  − ε₀(x,t,∅))
    hinge(ε) = ReLU(β·(d(ε, f_safe) − d(ε, f_unsafe) + m)),  d = mean squared error
    loss = ½·(hinge(ε_ft(x,t,c_mal)) + hinge(ε_ft(x,t,∅))) + λ·mean_j ‖ε_ft(x_j,t_j,∅) − ε₁(x_j,t_j,∅)‖²
with ε₀ the original model, ε₁ the stage-1 model and x_j latents of unconditional trajectories. On a
flow-matching family ε is the denoiser's own output (FLUX: the velocity), every call at embedded guidance 1
(the plain conditional prediction, as ε(c) on SD); the trajectories come from trajectories.py.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any, Callable

import torch

from ...models.families import load_family, pipeline_family
from ...models.families.base import Conditioning
from ..common import cast_conditioning, encode_conditioning, frozen_copy, select_parameters
from ..uce_families import flux_t5_length
from .trajectories import Plan, Sample, stage2_scheduler, stage2_shape, trajectory_latents

if TYPE_CHECKING:
    from ...data.concepts import Concept
    from ..base import EraseContext
    from .config import TRCEConfig

REFERENCE_UNCOND_POOL = 2000  # unconditional trajectories the reference generates; it indexes them mod this
REFERENCE_REG_OFFSET = 0.01  # the reference starts its regulariser sum at 0.01 (a constant; no gradient)


def is_stage2_trainable(name: str) -> bool:
    return "attn1" in name or ("attn2" in name and "to_q" in name)


def is_flux_stage2_trainable(name: str) -> bool:
    """The joint blocks' text-side attention projections: downstream of stage 1's edit and the part of the
    text path its closed form cannot reach (their inputs are not fixed rows); the image stream's stay as
    they are (docs/fidelity.md, "TRCE on SDXL and FLUX")."""
    return name.startswith("transformer_blocks.") and any(f".attn.{p}." in name for p in ("add_q_proj", "add_k_proj", "add_v_proj"))


TRAINABLE: dict[str, Callable[[str], bool]] = {"flux": is_flux_stage2_trainable}  # any other family: SD's


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return cond + scale * (cond - uncond)


def hinge_loss(eps: torch.Tensor, f_safe: torch.Tensor, f_unsafe: torch.Tensor, beta: float, margin: float) -> torch.Tensor:
    """Per-sample ReLU(β·(d(ε, f_safe) − d(ε, f_unsafe) + m)) with d the mean squared error."""
    dims = tuple(range(1, eps.dim()))
    d_safe = ((eps - f_safe) ** 2).mean(dim=dims)
    d_unsafe = ((eps - f_unsafe) ** 2).mean(dim=dims)
    return torch.relu(beta * (d_safe - d_unsafe + margin))


def trajectory_prompts(concept: "Concept", config: "TRCEConfig") -> list[tuple[str, str]]:
    pairs = concept.pairs[: config.pairs_stage2]
    fill = config.trajectory_template.format
    return [(fill(bad), fill(good)) for bad, good in pairs for _ in range(config.images_per_prompt)]


def make_plan(concept: "Concept", config: "TRCEConfig", timesteps: list[float], num_train_timesteps: int) -> Plan:
    rng = random.Random(config.seed)
    prompts = trajectory_prompts(concept, config)
    n = len(prompts)
    steps = config.steps
    stride = num_train_timesteps // steps
    total = config.iterations if config.iterations is not None else config.epochs * n
    malicious: list[Sample] = []
    regulariser: list[list[Sample | None]] = []
    order: list[int] = []
    # reference: files (i·R + j) mod 2000, i the index within the epoch; only those indices are generated
    n_uncond = min(REFERENCE_UNCOND_POOL, n * config.reg_batch_size) if config.reference else config.n_uncond
    for it in range(total):
        within = it % n
        if within == 0:
            order = list(range(n))
            if not config.reference:
                rng.shuffle(order)
        s = rng.randint(0, config.max_early_step)
        if config.reference:
            # the latent after step s with step s's own timestep: the reference draws t from step s's
            # interval but then overwrites it with the stored one (`latent, noise_pred, t = pred_list[s]`)
            malicious.append(Sample(order[within], s + 1, timesteps[s]))
            batch: list[Sample | None] = []
            for j in range(config.reg_batch_size):
                r = rng.randint(0, steps)
                traj = (within * config.reg_batch_size + j) % REFERENCE_UNCOND_POOL
                batch.append(None if r == steps else Sample(traj, r + 1, rng.randrange((steps - 1 - r) * stride, (steps - r) * stride)))
        else:
            malicious.append(Sample(order[within], s, timesteps[s]))
            batch = []
            for _ in range(config.reg_batch_size):
                r = rng.randrange(steps)
                batch.append(Sample(rng.randrange(config.n_uncond), r, timesteps[r]))
        regulariser.append(batch)
    return Plan(prompts, malicious, regulariser, n_uncond)


def stage2_embeddings(pipe, plan: Plan, device) -> dict[str, Conditioning]:
    """Image-size terms are left to each call (``Family.grid_prediction``), at the latents' grid. FLUX's
    T5 length is the one stage 1 edits at (256 schnell, 512 dev, pocket-flux's own 48)."""
    length = flux_t5_length(pipe) if pipeline_family(pipe) == "flux" else None

    def encode(texts: list[str]) -> Conditioning:
        return encode_conditioning(pipe, texts, device, image_terms=False, max_sequence_length=length)

    bad = encode([p[0] for p in plan.prompts])
    return {"trajectory": bad, "malicious": bad, "safe": encode([p[1] for p in plan.prompts]), "null": encode([""])}


def stacked(parts: list[Conditioning]) -> Conditioning:
    """The rows of ``parts`` one after another, field by field."""
    return Conditioning(*(None if f[0] is None else torch.cat(f) for f in zip(*(c.fields() for c in parts))))


def run_stage2(pipe, original, concept: "Concept", config: "TRCEConfig", context: "EraseContext") -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Fine-tune the pipeline's denoiser against ``original`` (its frozen pre-stage-1 copy)."""
    device = context.device
    family = load_family(pipeline_family(pipe))
    scheduler = stage2_scheduler(pipe, family, config, stage2_shape(pipe, family, config), device)
    plan = make_plan(concept, config, [t.item() for t in scheduler.timesteps], int(scheduler.config.num_train_timesteps))
    emb = stage2_embeddings(pipe, plan, device)
    original = original.to(device)
    started = time.perf_counter()
    mal_latents, reg_latents, traj_info = trajectory_latents(pipe, family, original, scheduler, plan, config, context, emb)
    traj_info = {**traj_info, "seconds": time.perf_counter() - started}
    denoiser = getattr(pipe, family.denoiser)
    stage1 = frozen_copy(denoiser)
    denoiser.train()
    params = [p for _, p in select_parameters(denoiser, TRAINABLE.get(family.name, is_stage2_trainable))]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay, eps=1e-8)
    null = emb["null"]
    timestep_dtype = scheduler.timesteps.dtype  # DDIM's integers; flow matching's sigma·1000

    def predict(model, x, t, cond):  # embedded guidance 1: the plain conditional prediction (FLUX-dev)
        # a bf16/fp16 model's layers refuse the fp32 conditioning (and latents) encoded here; the losses
        # are taken in fp32 (every cast is a no-op on an fp32 model)
        x, cond = x.to(model.dtype), cast_conditioning(cond, model.dtype)
        return family.grid_prediction(pipe, model, x, t, cond, torch.ones(x.shape[0], device=device)).float()

    target_curve: list[float] = []
    reg_curve: list[float] = []
    total = len(plan.malicious)
    for it, sample in enumerate(plan.malicious):
        x = mal_latents[it : it + 1].to(device)
        t = torch.tensor([sample.timestep], device=device, dtype=timestep_dtype)
        k = sample.trajectory
        with torch.no_grad():
            ref = predict(original, x.expand(3, -1, -1, -1), t.expand(3), stacked([emb["safe"].rows([k]), emb["malicious"].rows([k]), null]))
            eps_safe, eps_bad, eps_null = ref.chunk(3)
            f_safe = guided(eps_safe, eps_null, config.guidance)
            f_unsafe = guided(eps_bad, eps_null, config.guidance)
        draws = [(j, s) for j, s in enumerate(plan.regulariser[it]) if s is not None]
        xs = torch.cat([x, x] + [reg_latents[it, j : j + 1].to(device) for j, _ in draws])
        ts = torch.cat([t, t, torch.tensor([s.timestep for _, s in draws], device=device, dtype=timestep_dtype)])
        out = predict(denoiser, xs, ts, stacked([emb["malicious"].rows([k]), null, null.expand(len(draws))]))
        target = (
            hinge_loss(out[0:1], f_safe, f_unsafe, config.beta, config.margin)
            + hinge_loss(out[1:2], f_safe, f_unsafe, config.beta, config.margin)
        ).mean() / 2
        if draws:
            with torch.no_grad():
                reg_ref = predict(stage1, xs[2:], ts[2:], null.expand(len(draws)))
            reg_each = ((out[2:] - reg_ref) ** 2).mean(dim=(1, 2, 3))
            reg_sum = reg_each.sum()
        else:
            reg_sum = out.sum() * 0.0
        if config.reference:
            reg = (reg_sum + REFERENCE_REG_OFFSET) / config.reg_batch_size
        else:
            reg = reg_sum / max(len(draws), 1)
            optimizer.zero_grad(set_to_none=True)  # the reference never zeroes: its gradients accumulate
        loss = target + config.reg_weight * reg
        loss.backward()
        optimizer.step()
        target_curve.append(float(target.detach()))
        reg_curve.append(float(reg.detach()))
        context.progress("stage 2: fine-tuning", it + 1, total)
    denoiser.eval()
    denoiser.requires_grad_(False)
    return _summary(plan, traj_info, target_curve, reg_curve), {"stage2_target": target_curve, "stage2_reg": reg_curve}


def _summary(plan: Plan, traj_info: dict[str, Any], target: list[float], reg: list[float]) -> dict[str, Any]:
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    tenth = max(1, len(target) // 10)
    return {
        "iterations": len(target),
        "trajectories": traj_info,
        "target_loss_first": mean(target[:tenth]),
        "target_loss_last": mean(target[-tenth:]),
        "reg_loss_first": mean(reg[:tenth]),
        "reg_loss_last": mean(reg[-tenth:]),
    }
