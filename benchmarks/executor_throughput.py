"""Images per second of one evaluation with the local executor and with 1 and 2 Ray workers, measured
in one run and reported as ratios (the workers' start, their imports of torch and diffusers included,
is timed apart, and this process makes the same imports before any timing; each worker's first
pipeline load is inside the timing, as the local executor's is). Each mode draws into a fresh workspace and store, so
no image is reused, and the image sha256 per prompt must match across modes.

    python benchmarks/executor_throughput.py --n 256 --steps 10 --batch-size 8          # pocket, CPU
    python benchmarks/executor_throughput.py --model sd14-random --metric none --device cuda \\
        --dtype fp16 --n 64 --steps 30 --batch-size 16 --gpus-per-worker 0.5 --modes ray1,ray2   # one GPU

Threads: every process (the local driver and each worker) runs ``--cpus-per-worker`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def model_spec(name: str, root: Path) -> str:
    if name in ("tiny-random", "sd14-random"):
        from trce_audit.models.tiny import save_pipeline

        return str(save_pipeline(root / name, shape="tiny" if name == "tiny-random" else "sd14", seed=0))
    return name


def prompt_rows(n: int):
    from trce_audit.data import load_prompt_set
    from trce_audit.store import PromptRow

    base = load_prompt_set("pocket-explicit") + load_prompt_set("pocket-indirect")
    return [PromptRow(base[i % len(base)].text, 1000 + i, base[i % len(base)].guidance) for i in range(n)]


def run_mode(mode: str, args, model: str, rows, root: Path) -> dict:
    from trce_audit.api import evaluate, generate
    from trce_audit.execution import ExecutorOptions, make_executor
    from trce_audit.generation import GenerationSettings
    from trce_audit.store import Store
    from trce_audit.workspace import Workspace

    workspace = Workspace.from_options(root / mode, None, None).ensure()
    store = Store(workspace.db_url)
    set_id = store.add_prompt_set("bench", rows, source="benchmark")
    settings = GenerationSettings(steps=args.steps, batch_size=args.batch_size, dtype=args.dtype, device=args.device)
    started = time.perf_counter()
    if mode == "local":
        executor = make_executor(ExecutorOptions("local"))
    else:
        executor = make_executor(ExecutorOptions("ray", workers=int(mode[3:]), cpus_per_worker=args.cpus_per_worker,
                                                 gpus_per_worker=args.gpus_per_worker), device=args.device)
    start_s = time.perf_counter() - started
    with executor:
        began = time.perf_counter()
        if args.metric == "none":
            result = generate(store, workspace, model=model, prompts=set_id, settings=settings, executor=executor)
            gen_run = result["run_id"]
        else:
            result = evaluate(store, workspace, model=model, prompts=set_id, metrics=[args.metric], settings=settings,
                              concept="cross", executor=executor)
            gen_run = result["generation_run_id"]
        seconds = time.perf_counter() - began
    shas = [g.image_sha256 for g in store.generations(gen_run)]
    store.close()
    return {"mode": mode, "images": len(shas), "seconds": round(seconds, 2), "start_seconds": round(start_s, 2),
            "images_per_second": round(len(shas) / seconds, 3), "shas": shas}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pocket")
    parser.add_argument("--metric", default="pocket", help="a per-image metric, or none (generation only)")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--gpus-per-worker", type=float, default=None)
    parser.add_argument("--modes", default="local,ray1,ray2")
    args = parser.parse_args()
    import torch

    from trce_audit.execution.worker import warm_imports

    warm_imports()  # as every Ray worker does when it starts: imports are outside every mode's timing
    torch.set_num_threads(args.cpus_per_worker)
    with tempfile.TemporaryDirectory(prefix="trce-executor-bench-") as tmp:
        root = Path(tmp)
        model = model_spec(args.model, root)
        rows = prompt_rows(args.n)
        results = [run_mode(mode, args, model, rows, root) for mode in args.modes.split(",")]
    first = results[0]
    report = {
        "config": vars(args),
        "results": [{k: v for k, v in r.items() if k != "shas"} for r in results],
        "same_images_as_" + first["mode"]: {r["mode"]: r["shas"] == first["shas"] for r in results[1:]},
        "ratios_to_" + first["mode"]: {r["mode"]: round(r["images_per_second"] / first["images_per_second"], 3) for r in results[1:]},
    }
    if "ray1" in [r["mode"] for r in results] and "ray2" in [r["mode"] for r in results]:
        by = {r["mode"]: r for r in results}
        report["ray2_over_ray1"] = round(by["ray2"]["images_per_second"] / by["ray1"]["images_per_second"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
