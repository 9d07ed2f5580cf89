"""pocket-flux's two transformer objectives, through the FLUX family's training seam (``noised``,
``training_target``, ``model_timestep``, ``grid_prediction``), and the loop
that fits either (AdamW, warm-up then cosine decay by steps, EMA: the pocket SD trainer's). The wall
clock only guards a phase: the learning rate never reads it, so a run's weights do not depend on the
machine's load, and a phase the clock stops says so in its stats.

1. Rectified flow: x_t = (1 - s) x0 + s eps, target eps - x0, guidance input 1; the stream drops 10% of
   captions, so the model also learns the unconditional velocity (the empty prompt's).
2. Guidance distillation (Meng et al. 2023, arXiv 2210.03142, stage 1; FLUX.1-dev is guidance-distilled by
   a recipe Black Forest Labs did not publish): a copy of (1)'s EMA, given w ~ U(GUIDANCE_RANGE) in its
   guidance embedding, learns the frozen teacher's classifier-free-guided velocity v_u + w (v_c - v_u).
   The FLUX family samples with embedded guidance and never runs an unconditional pass.

Timesteps are logit-normal(0, 1): SD3's best (arXiv 2403.03206, section 3.1, "rf/lognorm(0.00, 1.00)"),
diffusers' ``compute_density_for_timestep_sampling("logit_normal")``; FLUX.1 publishes no recipe.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from .flux_models import GUIDANCE_RANGE
from .training import cosine_lr, log, step_with_ema


def velocity(family, pipe, denoiser, x_t, t, cond, guidance):
    """``denoiser``'s prediction for unpacked latents ``x_t`` at integer training timesteps ``t``."""
    return family.grid_prediction(pipe, denoiser, x_t, family.model_timestep(pipe, t), cond, guidance)


def noised_batch(family, pipe, x0, gen):
    """Logit-normal integer timesteps (larger is noisier), and x_t and the flow target at them."""
    steps = family.train_timesteps(pipe)
    u = torch.sigmoid(torch.randn(len(x0), generator=gen, device=gen.device)).to(x0.device)
    t = (u * steps).long().clamp(max=steps - 1)
    noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(x0.device)
    return t, family.noised(pipe, x0, noise, t), family.training_target(pipe, x0, noise, t)


def flow_objective(family, pipe, gen):
    def loss(model, x0, cond):
        t, x_t, target = noised_batch(family, pipe, x0, gen)
        ones = torch.ones(len(x0), device=x0.device)
        return F.mse_loss(velocity(family, pipe, model, x_t, t, cond, ones).float(), target.float())
    return loss


def distill_objective(family, pipe, gen, teacher, uncond):
    """``uncond``: the one-row conditioning of the empty prompt (``family.unconditional``)."""
    low, high = GUIDANCE_RANGE

    def loss(model, x0, cond):
        n = len(x0)
        t, x_t, _ = noised_batch(family, pipe, x0, gen)
        w = (low + (high - low) * torch.rand(n, generator=gen, device=gen.device)).to(x0.device)
        with torch.no_grad():  # unconditional rows first: concat keeps its receiver's rows first
            both = velocity(family, pipe, teacher, torch.cat([x_t, x_t]), torch.cat([t, t]),
                            uncond.expand(n).concat(cond), torch.ones(2 * n, device=x0.device))
            v_u, v_c = both.float().chunk(2)
        target = v_u + w.view(-1, *[1] * (x0.dim() - 1)) * (v_c - v_u)
        return F.mse_loss(velocity(family, pipe, model, x_t, t, cond, w).float(), target)
    return loss


def fit(model, batches, objective, steps, deadline, lr, fh, tag, amp=False, warmup=300, ema_decay=0.999,
        log_every=50):
    """Train ``model`` on ``objective(model, x0, cond)`` for ``steps`` (the lr schedule's length), stopping
    early at ``deadline``; returns its EMA and ``{tag}_steps/_seconds/_loss_avg/_stopped_by_clock/_trail``
    (the trail: [step, running loss, seconds] per log line)."""
    model.train().requires_grad_(True)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    t0, done, avg, trail = time.time(), 0, None, []
    while done < steps and time.time() < deadline:
        x0, cond = next(batches)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(done, steps, lr, warmup=warmup)
        with torch.autocast(device_type=x0.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = objective(model, x0, cond)
        step_with_ema(opt, model, ema, loss, done, ema_decay)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if done % log_every == 0:
            trail.append([done, round(avg, 5), round(time.time() - t0, 1)])
            log(f"{tag} step {done} loss {loss.item():.4f} avg {avg:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{trail[-1][2]:.0f}s", fh)
        done += 1
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)
    stopped = done < steps
    stats = {f"{tag}_steps": done, f"{tag}_seconds": round(time.time() - t0, 1), f"{tag}_loss_avg": avg,
             f"{tag}_stopped_by_clock": stopped, f"{tag}_trail": trail}
    log(f"{tag} done {done} steps, loss avg {avg}" + (f": the wall clock stopped it short of {steps}" if stopped else ""), fh)
    return ema, stats
