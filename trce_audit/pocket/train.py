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
``pocket_training.json``). The phases are in training.py, the data stream in stream.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

from .builders import save_pipeline
from .stream import make_loader
from .tokenizer import write_tokenizer
from .training import log, train_text, train_unet, train_vae


class Clock:
    def __init__(self, max_minutes):
        self.t0 = time.time()
        self.max_s = max_minutes * 60

    def elapsed(self):
        return time.time() - self.t0

    def left(self):
        return self.max_s - self.elapsed()



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
        shutil.copytree(a.tokenizer_dir, tok_dir, dirs_exist_ok=True)
    else:
        write_tokenizer(tok_dir, a.tokenizer_source)

    stats = {"pool_batches": None, "seed": a.seed, "unet_lr": unet_lr, "command": "python -m trce_audit.pocket.train " + " ".join(argv if argv is not None else sys.argv[1:]), "device": str(device),
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
        save_pipeline(out, te.cpu(), tok_dir, unet.cpu(), vae.cpu(),
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
