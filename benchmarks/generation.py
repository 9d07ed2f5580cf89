"""Seconds per image: a Python loop calling the diffusers pipeline once per prompt (batch 1) versus
trce-audit's batched engine (one text-encoder pass, one denoiser pass per step and one VAE decode per
batch), on any model family (SD, SDXL, SD3, FLUX).

    python benchmarks/generation.py --model tiny-random --n 16 --batch-size 8 --steps 10 --device cpu
    python benchmarks/generation.py --model shape:flux --n 8 --batch-size 4 --steps 4 --size 32 --device cpu
    python benchmarks/generation.py --model sd14-random --n 32 --batch-size 16 --steps 30 --device cuda
    python benchmarks/generation.py --model shape:sdxl-random --n 16 --batch-size 8 --steps 30 --device cuda
    python benchmarks/generation.py --model shape:flux-schnell-random --n 8 --batch-size 4 --steps 4 --device cuda --dtype bf16

--model is a diffusers folder, or shape:NAME for random weights built in code by trce_audit.models.tiny
(tiny-random and sd14-random are shape:tiny and shape:sd14; the full-size shapes run in fp16 on cuda
by default).
Both paths use the same pipeline object, prompts, seeds and scheduler; warm-up calls are not timed.
"""

from __future__ import annotations

import argparse
import json
import time


def load(args):
    import torch

    shape = {"tiny-random": "tiny", "sd14-random": "sd14"}.get(args.model) or args.model.removeprefix("shape:")
    if shape != args.model or args.model.startswith("shape:"):
        from trce_audit.models.tiny import build_pipeline

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        if shape.endswith("-random"):  # billions of parameters: build them where they run, in their precision
            return build_pipeline(shape, seed=0, device=args.device, dtype=dtype)
        pipe = build_pipeline(shape, seed=0)
        return pipe.to(args.device, dtype)
    from trce_audit.models.resolve import load_pipeline, resolve_model

    return load_pipeline(resolve_model(args.model), dtype=args.dtype, device=args.device)


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--n", type=int, default=16, help="prompts to generate")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32 | fp16 | bf16 [fp16 on cuda, fp32 on cpu]")
    parser.add_argument("--size", type=int, default=None, help="image side [the model's default]")
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoiser (used by both paths)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    args.dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")

    import numpy as np
    import torch

    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.engine import BatchSampler
    from trce_audit.records import PromptRow

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load(args)
    pipe.set_progress_bar_config(disable=True)
    denoiser = "unet" if hasattr(pipe, "unet") else "transformer"
    if args.compile:
        setattr(pipe, denoiser, torch.compile(getattr(pipe, denoiser)))
    # FLUX's transformer has no sample size; its pipeline defaults to 128 latent rows
    size = args.size or getattr(getattr(pipe, denoiser).config, "sample_size", 128) * pipe.vae_scale_factor
    rows = [PromptRow(f"a photograph of scene number {i}", seed=i, guidance=7.5) for i in range(args.n)]
    settings = GenerationSettings(steps=args.steps, height=size, width=size, batch_size=args.batch_size,
                                  dtype=args.dtype, device=args.device).validate()
    engine = BatchSampler(pipe, settings)

    def loop(prompts):
        out = []
        for row in prompts:
            image = pipe(row.text, num_inference_steps=args.steps, guidance_scale=row.guidance, height=size, width=size,
                         generator=torch.Generator().manual_seed(row.seed), output_type="np").images[0]
            out.append((image * 255).round().astype(np.uint8))
        return np.stack(out)

    def batched(prompts):
        return np.concatenate([engine.sample(prompts[i : i + args.batch_size]) for i in range(0, len(prompts), args.batch_size)])

    def timed(fn):
        fn(rows[: min(len(rows), args.batch_size)])  # warm-up (allocator, kernels, compile) at the timed shapes
        synchronize(args.device)
        start = time.perf_counter()
        images = fn(rows)
        synchronize(args.device)
        return (time.perf_counter() - start) / len(rows), images

    loop_s, loop_images = timed(loop)
    batch_s, batch_images = timed(batched)
    report = {
        "model": args.model,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": args.dtype,
        "size": size,
        "steps": args.steps,
        "n": args.n,
        "batch_size": args.batch_size,
        "compile": args.compile,
        "loop_s_per_image": round(loop_s, 4),
        "batched_s_per_image": round(batch_s, 4),
        "speedup": round(loop_s / batch_s, 2),
        "max_pixel_difference_loop_vs_batched": int(np.abs(loop_images.astype(int) - batch_images.astype(int)).max()),
    }
    if args.device.startswith("cuda"):
        report["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
