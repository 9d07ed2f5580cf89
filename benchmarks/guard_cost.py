"""Per-image generation cost of the inference-time guards (SLD, SAFREE) against the plain model, in one
run: the same prompts, seeds, batch and scheduler, guard attached or not, repeats interleaved and the
median taken. SAFREE's time is split into its per-prompt preparation (masked re-encodings, projectors,
the self-validating filter) and its sampling steps.

    PYTHONPATH=. python benchmarks/guard_cost.py --model pocket --n 32 --batch-size 32 --steps 30
    PYTHONPATH=. python benchmarks/guard_cost.py --model sd14-random --n 16 --batch-size 8 --steps 30 --device cuda

--model is pocket, a diffusers folder, or tiny-random / sd14-random (random weights of those shapes;
sd14-random runs in fp16 on cuda). SLD runs its default preset (medium), SAFREE its reference defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

CONCEPT = {"pocket": ["cross", "a cross", "plus sign"], "sd": ["nudity", "naked body", "nude person"]}
PROMPTS = {
    "pocket": ["a red cross on a grassy field", "a blue circle in the night sky", "a plus sign above a striped floor",
               "a green square at the top", "a large cross beside a triangle", "a yellow star in the middle"],
    "sd": ["a photo of a nude woman on a beach", "a red bus on a city street", "a naked man in a forest",
           "a bowl of fruit on a table", "a portrait of a person, oil painting", "a cat sleeping on a couch"],
}


def load(args):
    import torch

    if args.model in ("tiny-random", "sd14-random"):
        from trce_audit.models.tiny import build_pipeline

        pipe = build_pipeline("tiny" if args.model == "tiny-random" else "sd14", seed=0)
        return pipe.to(args.device, {"fp32": torch.float32, "fp16": torch.float16}[args.dtype]), "sd"
    from trce_audit.models.resolve import load_pipeline, resolve_model

    ref = resolve_model(args.model)
    return load_pipeline(ref, dtype=args.dtype, device=args.device), ref.world


def guards(world: str):
    from trce_audit.erasers.safree import NUDITY_SPACE, SAFREEConfig
    from trce_audit.erasers.sld import DIFFUSERS_SAFETY_CONCEPT, PRESETS
    from trce_audit.guards.safree import SAFREEGuard
    from trce_audit.guards.sld import SLDGuard

    sld_text = ", ".join(CONCEPT["pocket"]) if world == "pocket" else DIFFUSERS_SAFETY_CONCEPT
    space = CONCEPT["pocket"] if world == "pocket" else list(NUDITY_SPACE)
    return {
        "sld": SLDGuard({"preset": "medium", **PRESETS["medium"], "safety_concept": sld_text}),
        "safree": SAFREEGuard({**SAFREEConfig().as_dict(), "concept_space": space}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pocket")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32 | fp16 [fp16 on cuda, fp32 on cpu]")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    args.dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")

    import torch

    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.engine import BatchSampler
    from trce_audit.store import PromptRow

    torch.set_num_threads(args.threads)
    pipe, world = load(args)
    texts = PROMPTS[world]
    rows = [PromptRow(texts[i % len(texts)], seed=100 + i, guidance=7.5) for i in range(args.n)]
    size = int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    settings = GenerationSettings(steps=args.steps, height=size, width=size, batch_size=args.batch_size,
                                  device=args.device, dtype=args.dtype).validate()
    sampler = BatchSampler(pipe, settings)
    variants = {"plain": None, **guards(world)}
    prepare_seconds: list[float] = []
    real_prepare = variants["safree"].prepare

    def timed_prepare(*a, **k):
        start = time.perf_counter()
        out = real_prepare(*a, **k)
        sync(args.device)
        prepare_seconds.append(time.perf_counter() - start)
        return out

    variants["safree"].prepare = timed_prepare
    unet_seconds: list[float] = []
    unet_forward = pipe.unet.forward

    def timed_unet(*a, **k):
        start = time.perf_counter()
        out = unet_forward(*a, **k)
        sync(args.device)
        unet_seconds.append(time.perf_counter() - start)
        return out

    pipe.unet.forward = timed_unet

    def run_all() -> float:
        start = time.perf_counter()
        for i in range(0, len(rows), args.batch_size):
            sampler.sample(rows[i : i + args.batch_size])
        sync(args.device)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.no_grad():
        for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
            for name, guard in variants.items():
                pipe.trce_guard = guard
                if name == "safree":
                    prepare_seconds.clear()
                unet_seconds.clear()
                seconds = run_all()
                if repeat:
                    times[name].append(seconds)
                    times.setdefault(f"{name}_unet", []).append(sum(unet_seconds))
                    if name == "safree":
                        times.setdefault("safree_prepare", []).append(sum(prepare_seconds))
    pipe.trce_guard = None
    per_image = {name: statistics.median(values) / len(rows) for name, values in times.items()}
    result = {
        "model": args.model, "device": args.device, "dtype": args.dtype, "n": args.n, "batch_size": args.batch_size,
        "steps": args.steps, "size": size, "repeats": args.repeats,
        "seconds_per_image": {k: round(v, 5) for k, v in per_image.items() if not k.endswith("_unet")},
        "unet_seconds_per_image": {k.removesuffix("_unet"): round(v, 5) for k, v in per_image.items() if k.endswith("_unet")},
        "ratio_sld": round(per_image["sld"] / per_image["plain"], 3),
        "ratio_safree": round(per_image["safree"] / per_image["plain"], 3),
        "safree_prepare_share": round(per_image["safree_prepare"] / per_image["safree"], 3),
    }
    print(json.dumps(result, indent=2))


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
