"""Time every eraser with a world's default config (its preset), to check the CPU budget of a world.

    python benchmarks/erase_presets.py --model pocket --concept <pocket concept>   # once the pocket model exists
    python benchmarks/erase_presets.py --model tiny --world pocket                # stand-in: tiny random SD, 8x8 latents
    python benchmarks/erase_presets.py --model shape:sdxl-random --erasers uce,esd-x,trce --device cuda --dtype bf16

``--model shape:NAME`` builds random weights of a shape of trce_audit.models.tiny (any family; the
full-size ones are for a GPU), rebuilt for each eraser, erased with that family's preset.

With ``--model tiny`` a stand-in concept of ``--pairs`` synthetic pairs is erased and the captions are
the first ``--captions`` rows of ``coco_30k_val.csv`` from the data folder (or synthetic ones).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _captions(count: int) -> list[str]:
    data = Path(os.environ.get("TRCE_AUDIT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    path = data / "prompts" / "coco_30k_val.csv"
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as handle:
            return [row["prompt"] for row in csv.DictReader(handle)][:count]
    return [f"a photo of object {i} on a table" for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny (stand-in) or any model spec trce-audit resolves")
    parser.add_argument("--world", default=None, help="preset to use with --model tiny (default: pocket)")
    parser.add_argument("--concept", default=None, help="concept name for a real model (trce_audit.data.load_concept)")
    parser.add_argument("--erasers", default="uce,trce,esd-x,esd-u,speed,rece,advunlearn,mace")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--captions", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16 (the shape:NAME models)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value for every eraser")
    args = parser.parse_args(argv)

    import torch

    from trce_audit import registry
    from trce_audit.data.concepts import Concept
    from trce_audit.erasers.base import EraseContext

    torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    fingerprint, family, fresh = None, "sd", None
    if args.model.startswith("shape:"):
        from trce_audit.models.device import torch_dtype
        from trce_audit.models.families import pipeline_family
        from trce_audit.models.tiny import build_pipeline

        shape = args.model.split(":", 1)[1]
        fresh = lambda: build_pipeline(shape, seed=0, device=args.device, dtype=torch_dtype(args.dtype))  # noqa: E731
        base = fresh()
        world, family = "sd", pipeline_family(base)
        pairs = tuple((f"a nude person number {i}", f"a person wearing clothes number {i}") for i in range(args.pairs))
        concept = Concept("stand-in", pairs, world=world)
        captions = _captions(args.captions)
        latent = {}
    elif args.model == "tiny":
        from trce_audit.models.tiny import build_pipeline

        world = args.world or "pocket"
        base = build_pipeline("tiny")
        pairs = tuple((f"a red square number {i}", f"a blue circle number {i}") for i in range(args.pairs))
        concept = Concept("stand-in", pairs, world=world)
        captions = _captions(args.captions)
        latent = {"latent_size": 8}
    else:
        from trce_audit.data import load_concept, load_prompt_set
        from trce_audit.models.resolve import load_pipeline, resolve_model
        from trce_audit.workspace import Workspace

        workspace = Workspace.from_options()
        ref = resolve_model(args.model, workspace=workspace)
        world, fingerprint = ref.world, ref.fingerprint
        base = load_pipeline(ref)
        concept = load_concept(args.concept, world=world, workspace=workspace)
        captions = lambda name, limit: [r.text for r in load_prompt_set(name, workspace=workspace, limit=limit)]  # noqa: E731
        latent = {}
    denoiser = getattr(base, "unet", None) or base.transformer
    report = {"model": args.model, "world": world, "family": family, "dtype": args.dtype, "device": args.device,
              "denoiser_params": sum(p.numel() for p in denoiser.parameters()), "erasers": {}}
    del denoiser
    for name in args.erasers.split(","):
        cls = registry.load("eraser", name)
        extra = dict(overrides)
        if "latent_size" in {f for f in cls.Config.__dataclass_fields__}:
            extra.update(latent)
        config = cls.make_config(world=world, overrides=extra, family=family)
        if fresh is not None:  # a full-size model is rebuilt rather than copied: two would not fit a GPU
            base = None
            pipe = fresh()
        else:
            pipe = copy.deepcopy(base).to(args.device)
        with tempfile.TemporaryDirectory() as cache:
            context = EraseContext(
                cache_dir=Path(cache), device=args.device, captions=captions, model_fingerprint=fingerprint,
                batch_size=args.batch_size, world=world,
            )
            started = time.perf_counter()
            result = cls(config).erase(pipe, concept, context=context)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
        del pipe
        report["erasers"][name] = {"seconds": round(seconds, 1), "changed_tensors": len(result.changed_params)}
        print(json.dumps({name: report["erasers"][name]}), flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
