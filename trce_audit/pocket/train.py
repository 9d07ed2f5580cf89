"""Train the pocket text-to-image model (Stable Diffusion architecture) from a seed.

    python -m trce_audit.pocket.train --out DIR --seed 0 [--device cuda] [--max-minutes M]

Phases (each logged with its wall time):
  1. VAE (AutoencoderKL, 32x32x3 <-> 8x8x4) on rendered images; scaling_factor = 1/std(latents).
  2. Text encoder (CLIPTextModel, real CLIP BPE tokenizer) pre-trained CLIP-style: contrastive
     loss against a small image encoder plus auxiliary heads that read the caption's stated
     attributes from the pooled [EoT] state.  Then frozen.
  3. UNet2DConditionModel (epsilon prediction, SD's scaled-linear 1000-step schedule, 10%
     caption dropout for classifier-free guidance, EMA weights) on VAE latents.
Step counts are fixed by --*-steps; --max-minutes is a safety cap that splits wall time between
phases (a phase stops early if its share runs out; the steps actually run are recorded in
``pocket_training.json``).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import world
from . import models as M
from .tokenizer import MAX_LENGTH, write_tokenizer


# --------------------------------------------------------------------------- data
class WorldStream(torch.utils.data.IterableDataset):
    """Endless batches: packed scene arrays, token ids [B,77], caption targets [B,7]."""

    def __init__(self, batch: int, seed: int, tokenizer_dir: str, p_drop: float = 0.1, pad_longest: bool = False):
        self.batch, self.seed, self.tokenizer_dir, self.p_drop = batch, seed, tokenizer_dir, p_drop
        self.pad_longest = pad_longest

    def __iter__(self):
        from transformers import CLIPTokenizer

        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, wid])
        tok = CLIPTokenizer.from_pretrained(self.tokenizer_dir)
        while True:
            scenes, caps, tg = world.training_batch(self.batch, rng, self.p_drop)
            # pad_longest: pad only to the batch's longest caption.  With CLIP's causal attention the
            # states at those positions equal the ones of the 77-token padded input.
            ids = tok(caps, padding="longest" if self.pad_longest else "max_length", max_length=MAX_LENGTH,
                      truncation=True, return_tensors="np").input_ids.astype(np.int64)
            p = world.pack(scenes)
            p["labels_kinds"] = world.labels(scenes)["kinds"].numpy()
            p["labels_colours"] = world.labels(scenes)["colours"].numpy()
            p["labels_bg"] = world.labels(scenes)["background"].numpy()
            yield p, ids, tg


def make_loader(batch, seed, tokenizer_dir, p_drop, workers, pad_longest=False):
    ds = WorldStream(batch, seed, tokenizer_dir, p_drop, pad_longest)
    if workers <= 0:
        return iter(ds)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, prefetch_factor=4,
                                     persistent_workers=False)
    return iter(dl)


def to_dev(p, ids, tg, device, render=True):
    img = world.render_packed({k: v for k, v in p.items() if not k.startswith("labels")}, device) if render else None
    ids = torch.as_tensor(ids).to(device)
    tg = torch.as_tensor(tg).to(device)
    lab = {k[7:]: torch.as_tensor(v).to(device) for k, v in p.items() if k.startswith("labels")}
    return img, ids, tg, lab


class Clock:
    def __init__(self, max_minutes):
        self.t0 = time.time()
        self.max_s = max_minutes * 60

    def elapsed(self):
        return time.time() - self.t0

    def left(self):
        return self.max_s - self.elapsed()


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


# --------------------------------------------------------------------------- phases
def train_vae(loader, steps, deadline, device, amp, fh, lr=1e-3):
    vae = M.build_vae().to(device)
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
    def __init__(self, text_encoder):
        super().__init__()
        from .detector import PocketDetector

        self.text = text_encoder
        self.image = PocketDetector(width=16)
        d = M.TEXT_HIDDEN
        from .detector import FEATURE_DIM

        self.img_proj = nn.Linear(FEATURE_DIM, d)
        self.txt_proj = nn.Linear(d, d)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.aux = nn.ModuleList([nn.Linear(d, n) for n in world.CAPTION_TARGET_CLASSES])


def train_text(loader, steps, deadline, device, amp, fh, lr=1e-3, contrastive=True):
    """Contrastive (CLIP-style) + auxiliary attribute heads; ``contrastive=False`` trains the
    attribute heads alone (text only, no images: the cheap CPU setting)."""
    te = M.build_text_encoder().to(device)
    model = TextPretrainer(te).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    t0, step = time.time(), 0
    for step in range(steps):
        if time.time() > deadline:
            log(f"text: wall budget reached at step {step}", fh)
            break
        p, ids, tg = next(loader)
        x, ids, tg, lab = to_dev(p, ids, tg, device, render=contrastive)
        for gr in opt.param_groups:
            gr["lr"] = cosine_lr(step, steps, lr, warmup=100, t_start=t0, deadline=deadline)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out = model.text(input_ids=ids)
            pooled = out.pooler_output.float()
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
    stats = {"text_steps": step + 1, "text_seconds": round(time.time() - t0, 1),
             "text_final_loss": float(loss.item())}
    log(f"text done {stats}", fh)
    return te, stats


def train_unet(loader, steps, deadline, device, amp, fh, vae, te, out_dir, tok_dir, stats, lr=8e-4,
               ckpt_every_s=90, ckpt_cb=None, ema_decay=0.999, pool_batches=0):
    """``pool_batches`` > 0: keep the first that many batches' VAE latents and text states and
    cycle over them (reshuffled each epoch) instead of encoding fresh data every step -- the
    cheap CPU setting.  0: fresh rendered data every step."""
    from diffusers import DDPMScheduler

    unet = M.build_unet().to(device)
    ema = copy.deepcopy(unet).eval()
    for q in ema.parameters():
        q.requires_grad_(False)
    sched = DDPMScheduler(**{k: v for k, v in M.SCHEDULER_CONFIG.items()
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
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        d = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pu in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(pu, 1 - d)
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


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description="train the pocket SD-architecture model")
    ap.add_argument("--out", required=True, help="output diffusers folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None, help="default 512 on cuda, 64 on cpu")
    ap.add_argument("--vae-batch", type=int, default=None, help="default: batch on cuda, 32 on cpu")
    ap.add_argument("--vae-steps", type=int, default=None)
    ap.add_argument("--text-steps", type=int, default=None)
    ap.add_argument("--unet-steps", type=int, default=None)
    ap.add_argument("--max-minutes", type=float, default=170.0, help="wall-clock cap for all phases")
    ap.add_argument("--vae-frac", type=float, default=0.12, help="share of the wall budget for the VAE")
    ap.add_argument("--text-frac", type=float, default=0.12, help="share of the wall budget for the text encoder")
    ap.add_argument("--text-contrastive", type=int, default=None,
                    help="1: CLIP-style contrastive + attribute heads (default on cuda); 0: attribute heads only (default on cpu)")
    ap.add_argument("--pool-batches", type=int, default=None,
                    help="UNet phase: cache this many batches of latents/text states and cycle (default 0 cuda, 128 cpu)")
    ap.add_argument("--lr", type=float, default=None, help="UNet peak lr (default 8e-4 cuda, 5e-4 cpu)")
    ap.add_argument("--tokenizer-source", default=None, help="bpe_simple_vocab_16e6.txt.gz / open_clip wheel")
    ap.add_argument("--tokenizer-dir", default=None, help="use an existing tokenizer folder")
    ap.add_argument("--tar", default=None, help="also write DIR as tars PREFIX-text.tar / PREFIX-rest.tar at each checkpoint")
    ap.add_argument("--tar-tokenizer", action="store_true", help="include tokenizer/ in the tars")
    ap.add_argument("--ckpt-every", type=float, default=90.0, help="seconds between UNet checkpoints")
    a = ap.parse_args(argv)

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(a.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp = cuda or os.environ.get("POCKET_FORCE_AMP") == "1"
    batch = a.batch or (512 if cuda else 64)
    workers = a.workers if a.workers is not None else (min(8, max(0, (os.cpu_count() or 2) - 4)) if cuda else 0)
    vae_steps = a.vae_steps or 4000
    text_steps = a.text_steps or 3000
    unet_steps = a.unet_steps or 100000
    unet_lr = a.lr or (8e-4 if cuda else 5e-4)
    pool_batches = a.pool_batches if a.pool_batches is not None else (0 if cuda else 128)
    torch.set_flush_denormal(True)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out.parent / (out.name + ".train.log"), "a")
    clock = Clock(a.max_minutes)
    log(f"args {vars(a)} batch={batch} workers={workers} steps vae={vae_steps} text={text_steps} unet={unet_steps}", fh)
    tok_dir = out / "tokenizer"
    if a.tokenizer_dir:
        import shutil

        shutil.copytree(a.tokenizer_dir, tok_dir, dirs_exist_ok=True)
    else:
        write_tokenizer(tok_dir, a.tokenizer_source)

    stats = {"pool_batches": None, "seed": a.seed, "unet_lr": unet_lr, "command": "python -m trce_audit.pocket.train " + " ".join(argv if argv is not None else __import__("sys").argv[1:]), "device": str(device),
             "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
             "batch": batch, "torch": torch.__version__, "max_minutes": a.max_minutes}
    budget = clock.left() - 0.5 * 60  # keep 30 s for saving
    t_vae = time.time() + a.vae_frac * budget
    stats["pool_batches"] = pool_batches
    vae_batch = a.vae_batch or (batch if cuda else 16)
    loader = make_loader(vae_batch, a.seed * 1000 + 1, str(tok_dir), 0.0, workers)
    vae, s = train_vae(loader, vae_steps, t_vae, device, amp, fh, lr=2e-3 if not cuda else 1e-3)
    stats["vae_batch"] = vae_batch
    del loader
    loader = make_loader(batch, a.seed * 1000 + 3, str(tok_dir), 0.0, workers)
    stats.update(s)
    t_text = time.time() + a.text_frac * budget
    contrastive = a.text_contrastive if a.text_contrastive is not None else cuda
    if not contrastive:
        del loader
        loader = make_loader(batch, a.seed * 1000 + 3, str(tok_dir), 0.0, workers, pad_longest=True)
    te, s = train_text(loader, text_steps, t_text, device, amp, fh, contrastive=contrastive)
    stats["text_contrastive"] = contrastive
    stats.update(s)
    del loader
    loader = make_loader(batch, a.seed * 1000 + 2, str(tok_dir), 0.1, workers)

    def save(unet, st, final):
        t = time.time()
        M.save_pipeline(out, te.cpu(), tok_dir, unet.cpu(), vae.cpu(),
                        text_dtype=torch.float16, unet_dtype=torch.float16, vae_dtype=torch.float16,
                        extra=dict(st, final=final, total_seconds=round(clock.elapsed(), 1)))
        te.to(device), unet.to(device), vae.to(device)
        if a.tar:  # two tars (each < 16 MiB): text encoder, and the rest
            for suffix, names in (("-text.tar", ["text_encoder"]),
                                  ("-rest.tar", ["unet", "vae", "scheduler", "tokenizer", "model_index.json",
                                                 "pocket_training.json"])):
                tmp = a.tar + suffix + ".tmp"
                with tarfile.open(tmp, "w") as tf:
                    for n in names:
                        if n == "tokenizer" and not a.tar_tokenizer:
                            continue
                        tf.add(out / n, arcname=f"{out.name}/{n}")
                os.replace(tmp, a.tar + suffix)
        log(f"saved checkpoint (final={final}) in {time.time() - t:.1f}s", fh)

    unet_deadline = time.time() + max(10.0, clock.left() - 30)
    ema, st = train_unet(loader, unet_steps, unet_deadline, device, amp, fh, vae, te, out, tok_dir, stats,
                         ckpt_cb=save, ckpt_every_s=a.ckpt_every, lr=unet_lr, pool_batches=pool_batches)
    save(ema, st, final=True)
    log(f"total {clock.elapsed():.0f}s", fh)
    fh.close()
    os._exit(0)  # do not wait for data-loader workers


if __name__ == "__main__":
    main()
