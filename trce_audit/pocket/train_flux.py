"""Train pocket-flux (FLUX.1 architecture) on the pocket world from a seed.

    python -m trce_audit.pocket.train_flux --out DIR --seed 0 [--device cuda] [--threads N] [--max-minutes M]

Reused from the pocket SD model (``--model pocket``), frozen: its tokenizer (for both tokenizers), its CLIP
text encoder (FLUX reads its pooled output) and its VAE (FLUX's shift_factor and scaling_factor measured
here on renders). Phases, each a number of steps that its learning-rate schedule follows, so the weights
depend on the seed, the device and the thread count, never on the machine's load (``--max-minutes``, off by
default, only guards: a phase it stops is recorded as ``*_stopped_by_clock`` and is not the recipe):
  1. T5 encoder: the pocket SD trainer's text pre-training (attribute heads; CLIP-style contrastive too on
     cuda), reading the mean of T5's states over the padded prompt. Then frozen.
  2. Transformer, rectified flow (flux_fit.py), 10% empty captions, EMA.
  3. Guidance distillation of (2)'s EMA into the guidance embedding (``--distill-steps``).
Writes a FluxPipeline folder (fp16) with ``pocket_training.json`` (steps, seconds, seeds, loss trails,
weights sha256). Sample it at T5 length ``flux_models.T5_LENGTH``, 32x32.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import torch

from .. import registry
from .flux_builders import assemble, build_t5, build_transformer, save_flux_pipeline, shipped_parts
from .flux_fit import distill_objective, fit, flow_objective
from .flux_models import GUIDANCE_RANGE, T5_HIDDEN, T5_LENGTH
from .flux_training import Batches, latent_stats, t5_mean
from .models import MODEL_DIR
from .stream import make_loader
from .train import Clock
from .training import log, train_text


def parse(argv):
    ap = argparse.ArgumentParser(description="train pocket-flux, the pocket world's FLUX-architecture model")
    ap.add_argument("--out", required=True, help="output diffusers folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (part of what the weights are)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="wall-clock guard for all phases (default none; a phase it stops is recorded)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap every phase's steps (smoke tests)")
    ap.add_argument("--batch", type=int, default=None, help="default 512 on cuda, 64 on cpu")
    ap.add_argument("--workers", type=int, default=None, help="data-loader workers (default 8 on cuda, 0 on cpu)")
    ap.add_argument("--t5-steps", type=int, default=3000)
    ap.add_argument("--flow-steps", type=int, default=10000)
    ap.add_argument("--distill-steps", type=int, default=2500)
    ap.add_argument("--t5-frac", type=float, default=0.06, help="share of --max-minutes the T5 phase may use")
    ap.add_argument("--distill-frac", type=float, default=0.25, help="share of the transformer's minutes distillation may use")
    ap.add_argument("--text-contrastive", type=int, default=None, help="1: T5 pre-training CLIP-style too (default on cuda)")
    ap.add_argument("--pool-batches", type=int, default=None, help="cache and cycle this many batches (default 240 cpu, 0 cuda)")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak transformer lr (distillation: half)")
    ap.add_argument("--stat-batches", type=int, default=8, help="batches measuring the VAE's shift and scale")
    ap.add_argument("--log-every", type=int, default=50)
    a = ap.parse_args(argv)
    if not (0 <= a.t5_frac < 1 and 0 <= a.distill_frac < 1) or min(1 if a.max_steps is None else a.max_steps, a.stat_batches, a.log_every) < 1:
        ap.error("--t5-frac and --distill-frac must lie in [0, 1); --max-steps, --stat-batches and --log-every must be >= 1")
    if min(a.t5_steps, a.flow_steps, a.distill_steps, a.threads) < 1 or (a.max_minutes is not None and a.max_minutes <= 0):
        ap.error("--t5-steps, --flow-steps, --distill-steps and --threads must be >= 1, --max-minutes > 0")
    try:
        device = torch.device(a.device)
    except RuntimeError:
        ap.error(f"--device {a.device!r} is no torch device (cpu, cuda, cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: torch sees no CUDA device here")
    if not (MODEL_DIR / "model_index.json").is_file():
        ap.error(f"the pocket SD model is missing at {MODEL_DIR} (its tokenizer, text encoder and VAE are reused); reinstall trce-audit")
    return a


def main(argv=None) -> Path:
    a = parse(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / (out.name + ".train.log"), "a") as fh:  # closed on a failure too
        train(a, argv, out, fh)
    return out


def train(a, argv, out: Path, fh) -> None:
    """The phases in turn (the module's docstring) for ``parse``'s arguments ``a``, logging to ``fh``."""
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    batch, workers = a.batch or (512 if cuda else 64), a.workers if a.workers is not None else (8 if cuda else 0)
    pool = a.pool_batches if a.pool_batches is not None else (0 if cuda else 240)
    cap = a.max_steps if a.max_steps is not None else float("inf")
    clock = Clock(a.max_minutes if a.max_minutes is not None else math.inf)
    torch.manual_seed(a.seed)
    gen = torch.Generator(device).manual_seed(a.seed)
    stats = {"seed": a.seed, "command": "python -m trce_audit.pocket.train_flux " + " ".join(argv if argv is not None else sys.argv[1:]),
             "device": str(device), "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
             "threads": torch.get_num_threads(), "batch": batch, "pool_batches": pool, "lr": a.lr,
             "torch": torch.__version__, "max_minutes": a.max_minutes, "t5_length": T5_LENGTH,
             "timesteps": "logit-normal(0, 1)", "guidance_range": list(GUIDANCE_RANGE), "reused": f"tokenizer, text_encoder, vae of {MODEL_DIR.name}"}
    family = registry.load("family", "flux")()  # the plugin registry: families sit above the pocket world
    parts = shipped_parts()
    parts["vae"].to(device)
    tok = str(MODEL_DIR / "tokenizer")
    loader = make_loader(batch, a.seed * 1000 + 1, tok, 0.0, workers)
    shift, scale = latent_stats(parts["vae"], loader, device, a.stat_batches)
    parts["vae"].register_to_config(shift_factor=shift, scaling_factor=scale)
    stats.update(vae_shift_factor=shift, vae_scaling_factor=scale)
    log(f"vae shift {shift:.4f} scale {scale:.4f}", fh)
    def deadline(share: float) -> float:
        """A phase's guard: ``share`` of the minutes left, less 30 s kept for saving; none without --max-minutes."""
        return math.inf if a.max_minutes is None else time.time() + share * max(0.0, clock.left() - 30)

    contrastive = bool(a.text_contrastive if a.text_contrastive is not None else cuda)
    t5, s = train_text(loader, min(a.t5_steps, cap), deadline(a.t5_frac), device, cuda, fh,
                       contrastive=contrastive, encoder=build_t5(), readout=t5_mean, width=T5_HIDDEN, lr_by_clock=False)
    stats.update({"t5_contrastive": contrastive, **{"t5" + k[4:]: v for k, v in s.items()}})
    pipe = assemble(build_transformer(), t5, parts).to(device)
    batches = Batches(family, pipe, make_loader(batch, a.seed * 1000 + 2, tok, 0.1, workers), device, pool, gen)
    ema, s = fit(pipe.transformer, batches, flow_objective(family, pipe, gen), min(a.flow_steps, cap),
                 deadline(1 - a.distill_frac), a.lr, fh, "flow", amp=cuda, log_every=a.log_every)
    stats.update(s)
    uncond = family.unconditional(pipe, device, torch.float32, T5_LENGTH)
    student, s = fit(copy.deepcopy(ema), batches, distill_objective(family, pipe, gen, ema, uncond), min(a.distill_steps, cap),
                     deadline(1.0), a.lr / 2, fh, "distill", amp=cuda, warmup=100,
                     log_every=a.log_every)
    stats.update(s)
    pipe.transformer = student
    stopped = [tag for tag in ("t5", "flow", "distill") if stats[f"{tag}_stopped_by_clock"]]
    if stopped:
        log(f"warning: --max-minutes stopped {', '.join(stopped)} short of its steps: not the recipe's model", fh)
    save_flux_pipeline(pipe.to("cpu"), out, dict(stats, stopped_by_clock=stopped, total_seconds=round(clock.elapsed(), 1)))
    log(f"saved {out} in {clock.elapsed():.0f}s", fh)


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    main()
    os._exit(0)  # do not wait for data-loader workers
