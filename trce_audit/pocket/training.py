"""The three training phases of the pocket model: VAE, text encoder, UNet (see train.py for the order
and the wall-clock budget each phase gets)."""

from __future__ import annotations

import copy
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDPMScheduler

from .builders import build_text_encoder, build_unet, build_vae
from .captions import CAPTION_TARGET_CLASSES
from .detector import FEATURE_DIM, PocketDetector
from .models import SCHEDULER_CONFIG, TEXT_HIDDEN
from .stream import to_dev


def log(msg, fh=None):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if fh is not None:
        fh.write(line + "\n")
        fh.flush()


def cosine_lr(step, total, base, warmup=200, floor=0.1, t_start=None, deadline=None):
    """Warm-up then cosine decay; progress is the larger of the step fraction and, when a
    wall-clock deadline is given, the elapsed-time fraction (so a time-capped run still decays)."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    if t_start is not None and deadline is not None:
        p = max(p, min(1.0, (time.time() - t_start) / max(1e-6, deadline - t_start)))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def step_with_ema(opt, model, ema, loss, step, ema_decay):
    """One clipped optimiser step on ``loss``, then ``ema`` moves towards ``model`` with a decay that
    warms up from 0.1 (so the first steps are not averaged with the random initialisation)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    decay = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)


def train_vae(loader, steps, deadline, device, amp, fh, lr=1e-3):
    vae = build_vae().to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    t0, step = time.time(), 0
    for step in range(steps):
        if time.time() > deadline:
            log(f"vae: wall budget reached at step {step}", fh)
            break
        p, ids, tg = next(loader)
        x, *_ = to_dev(p, ids, tg, device)
        for gr in opt.param_groups:
            gr["lr"] = cosine_lr(step, steps, lr, warmup=100, t_start=t0, deadline=deadline)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            post = vae.encode(x * 2 - 1).latent_dist
            z = post.sample()
            rec = vae.decode(z).sample
        rec = rec.float()
        target = x * 2 - 1
        kl = post.kl().mean() / z[0].numel()
        loss = F.mse_loss(rec, target) + 0.5 * F.l1_loss(rec, target) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            log(f"vae step {step} loss {loss.item():.4f} mse {F.mse_loss(rec, target).item():.4f} "
                f"kl {kl.item():.3f} {time.time() - t0:.0f}s", fh)
    vae.eval()
    # scaling factor = 1/std of latents on fresh data
    zs = []
    with torch.no_grad():
        for _ in range(4):
            p, ids, tg = next(loader)
            x, *_ = to_dev(p, ids, tg, device)
            zs.append(vae.encode(x * 2 - 1).latent_dist.sample().float())
            rec = vae.decode(zs[-1]).sample
        mse = F.mse_loss(rec.clamp(-1, 1), x * 2 - 1).item()
    z = torch.cat(zs)
    sf = float(1.0 / z.std())
    vae.register_to_config(scaling_factor=sf)
    stats = {"vae_steps": step + 1, "vae_seconds": round(time.time() - t0, 1), "vae_scaling_factor": sf,
             "vae_recon_mse_pm1": mse, "latent_mean": float(z.mean())}
    log(f"vae done {stats}", fh)
    return vae, stats


class TextPretrainer(nn.Module):
    def __init__(self, text_encoder, d=TEXT_HIDDEN):
        super().__init__()
        self.text = text_encoder
        self.image = PocketDetector(width=16)
        self.img_proj = nn.Linear(FEATURE_DIM, d)
        self.txt_proj = nn.Linear(d, d)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.aux = nn.ModuleList([nn.Linear(d, n) for n in CAPTION_TARGET_CLASSES])


def clip_pooled(text_encoder, ids):
    return text_encoder(input_ids=ids).pooler_output


def train_text(loader, steps, deadline, device, amp, fh, lr=1e-3, contrastive=True, encoder=None,
               readout=clip_pooled, width=TEXT_HIDDEN, lr_by_clock=True):
    """Contrastive (CLIP-style) + auxiliary attribute heads; ``contrastive=False`` trains the
    attribute heads alone (text only, no images: the cheap CPU setting). ``encoder`` (the pocket CLIP
    encoder by default) is read by ``readout(encoder, ids)`` -> [B, width] (pocket-flux's T5).
    ``lr_by_clock=False``: the learning rate follows steps alone and ``deadline`` only stops the loop
    (recorded as ``text_stopped_by_clock``), so the weights do not depend on the machine's speed."""
    te = (encoder if encoder is not None else build_text_encoder()).to(device)
    model = TextPretrainer(te, width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    t0, step, stopped, loss = time.time(), 0, False, None
    for step in range(steps):
        if time.time() > deadline:
            log(f"text: wall budget reached at step {step}", fh)
            stopped = True
            break
        p, ids, tg = next(loader)
        x, ids, tg, lab = to_dev(p, ids, tg, device, render=contrastive)
        for gr in opt.param_groups:
            gr["lr"] = cosine_lr(step, steps, lr, warmup=100, t_start=t0, deadline=deadline if lr_by_clock else None)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            pooled = readout(model.text, ids).float()
            io = model.image(x) if contrastive else None
        lbl = torch.arange(len(pooled), device=device)
        if contrastive:
            t = F.normalize(model.txt_proj(pooled), dim=-1)
            i = F.normalize(model.img_proj(io["features"].float()), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * t @ i.t()
            closs = 0.5 * (F.cross_entropy(logits, lbl) + F.cross_entropy(logits.t(), lbl))
        else:
            logits = torch.zeros(len(pooled), len(pooled), device=device)
            closs = torch.zeros((), device=device)
        aux = 0.0
        for j, head in enumerate(model.aux):
            tj = tg[:, j]
            if (tj >= 0).any():
                aux = aux + F.cross_entropy(head(pooled), tj, ignore_index=-1)
        iaux = torch.zeros((), device=device)
        if contrastive:
            iaux = (F.binary_cross_entropy_with_logits(io["kinds"].float(), lab["kinds"])
                    + F.binary_cross_entropy_with_logits(io["colours"].float(), lab["colours"])
                    + F.cross_entropy(io["background"].float(), lab["bg"]))
        loss = closs + aux + iaux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            acc = (logits.argmax(-1) == lbl).float().mean().item()
            with torch.no_grad():
                accs = [((h(pooled).argmax(-1) == tg[:, j]).float().sum() / (tg[:, j] >= 0).float().sum().clamp(min=1)).item()
                        for j, h in enumerate(model.aux)]
            log(f"text aux accuracies {[round(v, 3) for v in accs]}", fh)
            log(f"text step {step} loss {loss.detach().item():.3f} clip {closs.item():.3f} aux {float(aux):.3f} "
                f"img {iaux.item():.3f} top1 {acc:.2f} {time.time() - t0:.0f}s", fh)
    te.eval()
    for q in te.parameters():
        q.requires_grad_(False)
    stats = {"text_steps": step if stopped else min(steps, step + 1), "text_seconds": round(time.time() - t0, 1),
             "text_final_loss": None if loss is None else float(loss.item()), "text_stopped_by_clock": stopped}
    log(f"text done {stats}", fh)
    return te, stats


def train_unet(loader, steps, deadline, device, amp, fh, vae, te, out_dir, tok_dir, stats, lr=8e-4,
               ckpt_every_s=90, ckpt_cb=None, ema_decay=0.999, pool_batches=0):
    """``pool_batches`` > 0: keep the first that many batches' VAE latents and text states and
    cycle over them (reshuffled each epoch) instead of encoding fresh data every step -- the
    cheap CPU setting.  0: fresh rendered data every step."""
    unet = build_unet().to(device)
    ema = copy.deepcopy(unet).eval()
    for q in ema.parameters():
        q.requires_grad_(False)
    sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items()
                             if k not in ("set_alpha_to_one", "steps_offset")})
    acp = sched.alphas_cumprod.to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    sf = vae.config.scaling_factor
    t0, last_ck, step = time.time(), time.time(), 0
    loss_avg = None
    pool, order, gen = [], [], torch.Generator().manual_seed(1234)
    pool_z = pool_c = None
    z_batch = 0
    for step in range(steps):
        if time.time() > deadline:
            log(f"unet: wall budget reached at step {step}", fh)
            break
        if pool_batches and len(pool) >= pool_batches:
            if not order:
                order.extend(torch.randperm(len(pool_z), generator=gen).tolist())
            idx = torch.tensor([order.pop() for _ in range(min(len(order), z_batch))])
            mu, sd = pool_z[idx][:, :4].float(), pool_z[idx][:, 4:].float()
            z0 = (mu + sd * torch.randn(mu.shape, generator=gen)) * sf
            ctx = pool_c[idx].float()
        else:
            p, ids, tg = next(loader)
            x, ids, tg, lab = to_dev(p, ids, tg, device)
            with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                dist = vae.encode(x * 2 - 1).latent_dist
                z0 = dist.sample().float() * sf
                ctx = te(input_ids=ids).last_hidden_state.float()
            if pool_batches:
                z_batch = len(z0)
                pool.append((torch.cat([dist.mean, dist.std], 1).half().cpu(), ctx.half().cpu()))
                if len(pool) == pool_batches:
                    pool_z = torch.cat([q[0] for q in pool])
                    pool_c = torch.cat([q[1] for q in pool])
                    log(f"unet: data pool complete ({len(pool_z)} samples) at step {step}", fh)
        noise = torch.randn_like(z0)
        t = torch.randint(0, 1000, (z0.shape[0],), device=device)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        for gr in opt.param_groups:
            gr["lr"] = cosine_lr(step, steps, lr, warmup=300, t_start=t0, deadline=deadline)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            pred = unet(zt, t, ctx).sample
        snr = a / (1 - a)
        w = snr.clamp(max=5.0) / snr  # min-SNR-5 weighting for epsilon prediction
        loss = (w * (pred.float() - noise) ** 2).mean()
        step_with_ema(opt, unet, ema, loss, step, ema_decay)
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if step % int(os.environ.get("POCKET_LOG_EVERY", "50")) == 0:
            log(f"unet step {step} loss {loss.item():.4f} avg {loss_avg:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{time.time() - t0:.0f}s", fh)
        if ckpt_cb is not None and time.time() - last_ck > ckpt_every_s:
            st = dict(stats, unet_steps=step + 1, unet_seconds=round(time.time() - t0, 1), unet_loss_avg=loss_avg)
            ckpt_cb(ema, st, final=False)
            last_ck = time.time()
    for b_e, b_u in zip(ema.buffers(), unet.buffers()):
        b_e.copy_(b_u)
    st = dict(stats, unet_steps=step + 1, unet_seconds=round(time.time() - t0, 1), unet_loss_avg=loss_avg)
    log(f"unet done steps={step + 1} loss_avg={loss_avg}", fh)
    return ema, st
