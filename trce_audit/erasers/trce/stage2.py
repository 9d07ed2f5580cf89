"""TRCE stage 2: fine-tune attn1.* and attn2.to_q so early denoising steps of malicious prompts move
towards the safe prediction.

Per iteration, on one latent x_t of a malicious trajectory (sampled by the original model):
    f_safe   = ε₀(x,t,c_safe) + g·(ε₀(x,t,c_safe) − ε₀(x,t,∅))
    f_unsafe = ε₀(x,t,c_mal)  + g·(ε₀(x,t,c_mal)  − ε₀(x,t,∅))
    hinge(ε) = ReLU(β·(d(ε, f_safe) − d(ε, f_unsafe) + m)),  d = mean squared error
    loss = ½·(hinge(ε_ft(x,t,c_mal)) + hinge(ε_ft(x,t,∅))) + λ·mean_j ‖ε_ft(x_j,t_j,∅) − ε₁(x_j,t_j,∅)‖²
with ε₀ the original model, ε₁ the stage-1 model and x_j latents of unconditional trajectories.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from ...hashing import hash_obj
from ...workspace import temp_sibling
from ...models.families import load_family, pipeline_family
from ...models.families.base import Conditioning
from ..common import ddim_scheduler, encode_conditioning, frozen_copy, latent_shape, sample_states, seeded_noise, select_parameters

if TYPE_CHECKING:
    from ...data.concepts import Concept
    from ..base import EraseContext
    from .config import TRCEConfig

TRAJECTORY_CACHE_VERSION = 1
REFERENCE_UNCOND_POOL = 2000  # unconditional trajectories the reference generates; it indexes them mod this
REFERENCE_REG_OFFSET = 0.01  # the reference starts its regulariser sum at 0.01 (a constant; no gradient)


def is_stage2_trainable(name: str) -> bool:
    return "attn1" in name or ("attn2" in name and "to_q" in name)


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return cond + scale * (cond - uncond)


def hinge_loss(eps: torch.Tensor, f_safe: torch.Tensor, f_unsafe: torch.Tensor, beta: float, margin: float) -> torch.Tensor:
    """Per-sample ReLU(β·(d(ε, f_safe) − d(ε, f_unsafe) + m)) with d the mean squared error."""
    dims = tuple(range(1, eps.dim()))
    d_safe = ((eps - f_safe) ** 2).mean(dim=dims)
    d_unsafe = ((eps - f_unsafe) ** 2).mean(dim=dims)
    return torch.relu(beta * (d_safe - d_unsafe + margin))


@dataclass(frozen=True)
class Sample:
    trajectory: int
    state: int  # index of the latent along the trajectory (0 = initial noise)
    timestep: int


@dataclass
class Plan:
    """Which latents each iteration uses, drawn up front so only those latents are kept."""

    prompts: list[tuple[str, str]]  # per malicious trajectory: (malicious prompt, safe prompt)
    malicious: list[Sample]
    regulariser: list[list[Sample | None]]  # None: a draw the reference skips (index past the end)
    n_uncond: int


def trajectory_prompts(concept: "Concept", config: "TRCEConfig") -> list[tuple[str, str]]:
    pairs = concept.pairs[: config.pairs_stage2]
    fill = config.trajectory_template.format
    return [(fill(bad), fill(good)) for bad, good in pairs for _ in range(config.images_per_prompt)]


def make_plan(concept: "Concept", config: "TRCEConfig", timesteps: list[int], num_train_timesteps: int) -> Plan:
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
            malicious.append(Sample(order[within], s + 1, int(timesteps[s])))
            batch: list[Sample | None] = []
            for j in range(config.reg_batch_size):
                r = rng.randint(0, steps)
                traj = (within * config.reg_batch_size + j) % REFERENCE_UNCOND_POOL
                batch.append(None if r == steps else Sample(traj, r + 1, rng.randrange((steps - 1 - r) * stride, (steps - r) * stride)))
        else:
            malicious.append(Sample(order[within], s, int(timesteps[s])))
            batch = []
            for _ in range(config.reg_batch_size):
                r = rng.randrange(steps)
                batch.append(Sample(rng.randrange(config.n_uncond), r, int(timesteps[r])))
        regulariser.append(batch)
    return Plan(prompts, malicious, regulariser, n_uncond)


def trajectory_latents(
    pipe, unet_original, plan: Plan, config: "TRCEConfig", context: "EraseContext", embeddings: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Latents aligned with the plan: [I, C, H, W] malicious and [I, R, C, H, W] regulariser (zeros where
    a draw is skipped). Cached in the workspace by everything that determines them."""
    shape = latent_shape(pipe, config.latent_size)
    key = hash_obj(
        {
            "v": TRAJECTORY_CACHE_VERSION,
            "model": context.model_fingerprint or "unhashed",
            "prompts": plan.prompts,
            "mal": [(s.trajectory, s.state) for s in plan.malicious],
            "reg": [[(s.trajectory, s.state) if s else None for s in b] for b in plan.regulariser],
            "shape": shape,
            "steps": config.steps,
            "guidance": config.trajectory_guidance,
            "seed": config.seed,
            "mode": config.mode,
        }
    )
    path = Path(context.cache_dir) / "trce-trajectories" / f"{key[:32]}.safetensors"
    info = {"cache": str(path), "n_malicious": len(plan.prompts), "n_uncond": plan.n_uncond}
    if context.model_fingerprint and path.is_file():
        data = load_file(str(path))
        return data["malicious"], data["regulariser"], {**info, "cache_hit": True}
    scheduler = ddim_scheduler(pipe, config.steps, steps_offset=0 if config.reference else None)
    wanted_mal: list[set[int]] = [set() for _ in plan.prompts]
    for s in plan.malicious:
        wanted_mal[s.trajectory].add(s.state)
    wanted_reg: list[set[int]] = [set() for _ in range(plan.n_uncond)]
    for batch in plan.regulariser:
        for s in batch:
            if s is not None:
                wanted_reg[s.trajectory].add(s.state)
    device = context.device
    cond = embeddings["trajectory"]
    n_mal, n_all = len(plan.prompts), len(plan.prompts) + plan.n_uncond
    context.progress("stage 2: trajectories", 0, n_all)
    noise = seeded_noise(n_mal, shape, config.seed * 1_000_003, device)
    family = load_family(pipeline_family(pipe))
    mal = sample_states(
        unet_original, scheduler, cond, embeddings["null"], config.trajectory_guidance, noise, wanted_mal,
        context.batch_size, lambda done: context.progress("stage 2: trajectories", done, n_all), family=family,
    )
    noise = seeded_noise(plan.n_uncond, shape, config.seed * 1_000_003 + 500_000, device)
    reg = sample_states(
        unet_original, scheduler, None, embeddings["null"], 1.0, noise, wanted_reg, context.batch_size,
        lambda done: context.progress("stage 2: trajectories", n_mal + done, n_all), family=family,
    )
    context.progress("stage 2: trajectories", n_all, n_all)
    malicious = torch.stack([mal[(s.trajectory, s.state)] for s in plan.malicious]) if plan.malicious else torch.empty((0, *shape))
    zeros = torch.zeros(shape)
    regulariser = (
        torch.stack([torch.stack([reg[(s.trajectory, s.state)] if s else zeros for s in b]) for b in plan.regulariser])
        if plan.regulariser
        else torch.empty((0, config.reg_batch_size, *shape))
    )
    if context.model_fingerprint:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)  # erasers of one audit may run at once
        save_file({"malicious": malicious.contiguous(), "regulariser": regulariser.contiguous()}, str(tmp))
        tmp.replace(path)
    return malicious, regulariser, {**info, "cache_hit": False}


def stage2_embeddings(pipe, plan: Plan, device) -> dict[str, Conditioning]:
    bad = encode_conditioning(pipe, [p[0] for p in plan.prompts], device)
    good = encode_conditioning(pipe, [p[1] for p in plan.prompts], device)
    null = encode_conditioning(pipe, [""], device)
    return {"trajectory": bad, "malicious": bad, "safe": good, "null": null}


def stacked(parts: list[Conditioning]) -> Conditioning:
    """The rows of ``parts`` one after another, field by field."""
    return Conditioning(*(None if f[0] is None else torch.cat(f) for f in zip(*(c.fields() for c in parts))))


def run_stage2(pipe, unet_original, concept: "Concept", config: "TRCEConfig", context: "EraseContext") -> tuple[dict[str, Any], dict[str, list[float]]]:
    device = context.device
    scheduler = ddim_scheduler(pipe, config.steps, steps_offset=0 if config.reference else None)
    plan = make_plan(concept, config, [int(t) for t in scheduler.timesteps], int(scheduler.config.num_train_timesteps))
    emb = stage2_embeddings(pipe, plan, device)
    family = load_family(pipeline_family(pipe))
    unet_original = unet_original.to(device)
    started = time.perf_counter()
    mal_latents, reg_latents, traj_info = trajectory_latents(pipe, unet_original, plan, config, context, emb)
    traj_info = {**traj_info, "seconds": time.perf_counter() - started}
    unet_stage1 = frozen_copy(pipe.unet)
    unet = pipe.unet
    unet.train()
    params = [p for _, p in select_parameters(unet, is_stage2_trainable)]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay, eps=1e-8)
    null = emb["null"]
    target_curve: list[float] = []
    reg_curve: list[float] = []
    total = len(plan.malicious)
    for it, sample in enumerate(plan.malicious):
        x = mal_latents[it : it + 1].to(device)
        t = torch.tensor([sample.timestep], device=device, dtype=torch.long)
        k = sample.trajectory
        with torch.no_grad():
            ref = family.call_denoiser(
                unet_original, x.expand(3, -1, -1, -1), t.expand(3), stacked([emb["safe"].rows([k]), emb["malicious"].rows([k]), null])
            )
            eps_safe, eps_bad, eps_null = ref.chunk(3)
            f_safe = guided(eps_safe, eps_null, config.guidance)
            f_unsafe = guided(eps_bad, eps_null, config.guidance)
        draws = [(j, s) for j, s in enumerate(plan.regulariser[it]) if s is not None]
        xs = torch.cat([x, x] + [reg_latents[it, j : j + 1].to(device) for j, _ in draws])
        ts = torch.cat([t, t, torch.tensor([s.timestep for _, s in draws], device=device, dtype=torch.long)])
        conds = stacked([emb["malicious"].rows([k]), null, null.expand(len(draws))])
        out = family.call_denoiser(unet, xs, ts, conds)
        target = (
            hinge_loss(out[0:1], f_safe, f_unsafe, config.beta, config.margin)
            + hinge_loss(out[1:2], f_safe, f_unsafe, config.beta, config.margin)
        ).mean() / 2
        if draws:
            with torch.no_grad():
                reg_ref = family.call_denoiser(unet_stage1, xs[2:], ts[2:], null.expand(len(draws)))
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
    unet.eval()
    unet.requires_grad_(False)
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
